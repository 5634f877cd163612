from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "mockups.catalog"
    label = "catalog"
