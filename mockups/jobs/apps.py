from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "mockups.jobs"
    label = "jobs"
