from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "mockups.accounts"
    label = "accounts"
