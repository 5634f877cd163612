from django.apps import AppConfig


class FleetConfig(AppConfig):
    """The operators' side of the GPU workers: heartbeats, resident models, LoRA preloads, previews."""

    name = "mockups.fleet"
    label = "fleet"
    verbose_name = "GPU fleet"

    def ready(self) -> None:
        # Every process that runs jobs (worker processes, the embedded web process) records style
        # previews as their jobs finish, whichever process queued them.
        from mockups.catalog.services import style_preview_on_event
        from mockups.jobs.events import event_listener_add

        event_listener_add(style_preview_on_event)
