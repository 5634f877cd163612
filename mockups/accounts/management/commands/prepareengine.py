"""``manage.py prepareengine``: make the configured engine's models ready before serving.

For the tiny engine it builds the random-weight demo models once (later runs find them). For
SDXL it checks that the weights are available locally. It also reports which background
removal method will be used. A missing model is a clear error here, never a download later.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mockups.jobs import runtime


class Command(BaseCommand):
    help = "Build or check the engine's models and the background-removal model."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--load", action="store_true", help="Also load and warm up the engine here")

    def handle(self, *args: Any, **options: Any) -> None:
        from gpu_runtime.errors import EngineError

        started = time.perf_counter()
        if settings.MOCKUP_ENGINE == "tiny":
            from gpu_runtime.tiny import ensure_tiny_models

            folder = ensure_tiny_models(settings.TINY_MODELS_DIR)
            self.stdout.write(f"Tiny demo models ready in {folder} ({time.perf_counter() - started:.1f} s).")
        else:
            self.stdout.write(
                f"SDXL base: {settings.SDXL_BASE_MODEL}; ControlNet: {settings.SDXL_CONTROLNET_MODEL}"
            )
        try:
            remover = runtime.background_remover()
        except Exception as exc:  # CutoutModelMissing when the fallback is switched off
            raise CommandError(str(exc)) from exc
        health = remover.health()
        detail = health.get("detail", health.get("model_path", ""))
        self.stdout.write(f"Background removal: {health.get('method')} ({detail})")
        if options["load"] or settings.MOCKUP_ENGINE == "sdxl":
            try:
                engine = runtime.engine()
            except EngineError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Engine ready: {engine.health()}")
