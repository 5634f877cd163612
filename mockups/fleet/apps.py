from django.apps import AppConfig


class FleetConfig(AppConfig):
    """The GPU workers as the operators see them: heartbeats, resident models, LoRA preloads."""

    name = "mockups.fleet"
    label = "fleet"
    verbose_name = "GPU fleet"
