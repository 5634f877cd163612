from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "mockups.api"
    label = "api"

    def ready(self) -> None:
        # After mockups.jobs (earlier in INSTALLED_APPS) has installed the broker: declare our actors,
        # and hear every job event after commit to turn it into webhooks.
        from mockups.api import tasks  # noqa: F401  (declares the actors)
        from mockups.api.webhooks import webhook_event_heard
        from mockups.jobs.events import event_listener_add

        event_listener_add(webhook_event_heard)
