"""What ``GET /api/v1/health`` reports: web, database, broker, GPU workers seen, models resident, queues.

Each part is checked on its own and reports its failure in words instead of failing the request:
a health endpoint that errors out when the broker is down tells an operator nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq
from django.db import connection
from django.db.models import Count

from mockups.jobs.models import ACTIVE_JOB_STATUSES, Job
from mockups.queue import ALL_QUEUES

logger = logging.getLogger(__name__)


def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        detail = check() or ""
        ok = True
    except Exception as exc:
        logger.warning("health check failed: %s", exc)
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return {"ok": ok, "detail": detail, "latency_ms": round((time.monotonic() - started) * 1000, 2)}


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return str(connection.vendor)


def broker_kind(broker: dramatiq.Broker) -> str:
    name = type(broker).__name__
    return {"StubBroker": "embedded", "RedisBroker": "redis", "RabbitmqBroker": "rabbitmq"}.get(name, name)


def _broker_ping(broker: dramatiq.Broker) -> str:
    kind = broker_kind(broker)
    if kind == "redis":
        broker.client.ping()  # type: ignore[attr-defined]
    elif kind == "rabbitmq":
        _ = broker.connection  # type: ignore[attr-defined]  # opens (or reuses) the connection
    return kind


def queue_depths(broker: dramatiq.Broker) -> dict[str, int | None]:
    """Messages waiting per queue, as the broker counts them (None where it cannot say)."""
    depths: dict[str, int | None] = {}
    kind = broker_kind(broker)
    for queue in ALL_QUEUES:
        try:
            if kind == "embedded":
                depths[queue] = broker.queues[queue].qsize()
            elif kind == "redis":
                depths[queue] = int(broker.do_qsize(queue))  # type: ignore[attr-defined]
            elif kind == "rabbitmq":
                depths[queue] = int(broker.get_queue_message_counts(queue)[0])  # type: ignore[attr-defined]
            else:
                depths[queue] = None
        except Exception as exc:
            logger.warning("could not count the %s queue: %s", queue, exc)
            depths[queue] = None
    return depths


def gpu_workers() -> list[dict[str, Any]]:
    """GPU-queue workers seen in the last 30 s, from the fleet table (none when that app is absent)."""
    try:
        from mockups.fleet.selectors import gpu_workers_seen, worker_models_resident
    except ImportError:
        return []
    return [
        {
            "name": worker.name,
            "last_seen_at": worker.last_seen_at,
            "models_resident": worker_models_resident(worker),
            "health": dict(worker.health) if isinstance(worker.health, dict) else {},
        }
        for worker in gpu_workers_seen(within_s=30)
    ]


def health_report() -> dict[str, Any]:
    broker = dramatiq.get_broker()
    database = _timed(_database)
    broker_check = _timed(lambda: _broker_ping(broker))
    workers = gpu_workers()
    resident = sorted({m for w in workers for m in w["models_resident"]})
    jobs: dict[str, int] = {str(status): 0 for status in ACTIVE_JOB_STATUSES}
    if database["ok"]:
        counts = (
            Job.objects.filter(status__in=list(ACTIVE_JOB_STATUSES)).values("status").annotate(n=Count("id"))
        )
        jobs.update({str(row["status"]): int(row["n"]) for row in counts})
    return {
        "status": "ok" if database["ok"] and broker_check["ok"] else "degraded",
        "web": {"ok": True, "detail": "answering", "latency_ms": None},
        "database": database,
        "broker": {**broker_check, "kind": broker_kind(broker)},
        "gpu_workers": workers,
        "models_resident": resident,
        "queues": queue_depths(broker),
        "jobs": jobs,
    }
