from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "mockups.api"
    label = "api"
