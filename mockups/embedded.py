"""The embedded default: queue workers, and the engine, inside the web process."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


def embedded_start(*, preload_engine: bool = True) -> None:
    """Start in-process workers, re-send jobs a restart left behind, warm the engine in the background."""
    from mockups.jobs.services import job_requeue_stranded
    from mockups.queue import embedded_worker_start

    embedded_worker_start()
    try:
        sent = job_requeue_stranded()
        if sent:
            logger.info("re-sent %d unfinished jobs to the embedded workers", sent)
    except Exception:  # the database may not be migrated yet; serving pages must not depend on it
        logger.exception("could not look for unfinished jobs")
    if preload_engine:
        threading.Thread(target=_warm_engine, name="engine-warmup", daemon=True).start()


def _warm_engine() -> None:
    from mockups.jobs import runtime

    try:
        engine = runtime.engine()
        logger.info("engine ready")
        from mockups.fleet.heartbeat import heartbeat_start

        heartbeat_start(engine.health, lora_preload=engine.lora_preload)
    except Exception:
        logger.exception("the engine could not start; jobs will fail until it can")
