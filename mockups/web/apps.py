from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "mockups.web"
    label = "web"
