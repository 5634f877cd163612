from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "mockups.jobs"
    label = "jobs"

    def ready(self) -> None:
        # The broker must be in place before any actor is declared.
        from mockups.queue import broker_setup

        broker_setup()
        from mockups.jobs import tasks  # noqa: F401  (declares the actors)
