"""The bridge between settings and ``gpu_runtime``: one background remover and one engine per process."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from gpu_runtime.cutout import BackgroundRemover
    from gpu_runtime.engine import Engine, EngineConfig

_lock = threading.Lock()


def background_remover() -> BackgroundRemover:
    """The process's remover (the rembg session is created once and reused)."""
    from gpu_runtime.cutout import get_background_remover

    return get_background_remover(
        model_dir=settings.REMBG_MODEL_DIR,
        model_name=settings.REMBG_MODEL,
        allow_fallback=settings.REMBG_ALLOW_FALLBACK,
    )


def engine_config() -> EngineConfig:
    from gpu_runtime.engine import EngineConfig

    base_model, controlnet, dtype = (
        settings.SDXL_BASE_MODEL,
        settings.SDXL_CONTROLNET_MODEL,
        settings.MODEL_DTYPE,
    )
    if settings.MOCKUP_ENGINE == "sdxl":
        # Operators may register models in the admin; the default one wins over the environment.
        from mockups.catalog.selectors import base_model_default, controlnet_default

        if (base := base_model_default()) is not None:
            base_model, dtype = base.source, base.dtype
        if (control := controlnet_default()) is not None:
            controlnet = control.source
    return EngineConfig(
        kind="sdxl" if settings.MOCKUP_ENGINE == "sdxl" else "tiny",
        base_model=base_model,
        controlnet=controlnet,
        tiny_dir=settings.TINY_MODELS_DIR,
        dtype=dtype,
        compile=settings.ENGINE_COMPILE,
    )


_config: EngineConfig | None = None


def engine() -> Engine:
    """The resident engine: loaded and warmed up on first use, then kept for the process's life.

    The configuration (including the default models an operator picked in the admin) is read once
    per process: a worker loads a newly chosen default model at its next start, never mid-job.
    """
    global _config
    from gpu_runtime.engine import get_engine

    with _lock:
        if _config is None:
            _config = engine_config()
        return get_engine(_config)
