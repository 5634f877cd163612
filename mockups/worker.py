"""Entry point for Dramatiq worker processes.

    dramatiq mockups.worker -Q cpu webhooks              # CPU workers: scale freely
    dramatiq mockups.worker -Q gpu -p 1 -t 1             # one per GPU; prefetch 1 (see below)

A worker that consumes the ``gpu`` queue loads the engine at boot, so no request ever waits
for a model to load. Set ``dramatiq_queue_prefetch=1`` (env ``dramatiq_queue_prefetch``) so a
GPU worker holds only the job it is running.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import django
from dramatiq.middleware import Middleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mockups.settings")
os.environ.setdefault("dramatiq_queue_prefetch", "1")
django.setup()

import dramatiq  # noqa: E402

from mockups.jobs import tasks  # noqa: E402,F401
from mockups.queue import QUEUE_GPU  # noqa: E402

logger = logging.getLogger("mockups.worker")


class EnginePreload(Middleware):
    """Load and warm the engine when a GPU-queue worker boots: zero cold start on the request path."""

    def after_worker_boot(self, broker: Any, worker: Any) -> None:
        queues = getattr(worker, "queues", None)
        if queues is None or QUEUE_GPU in queues:
            from mockups.jobs import runtime

            engine = runtime.engine()
            logger.info("engine ready: %s", engine.health())
            from mockups.fleet.heartbeat import heartbeat_start

            heartbeat_start(engine.health, lora_preload=engine.lora_preload, queues=queues)


dramatiq.get_broker().add_middleware(EnginePreload())
