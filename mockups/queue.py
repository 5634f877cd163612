"""The Dramatiq broker, chosen from settings, and the middleware every actor runs under.

- ``BROKER_URL`` unset: the embedded default, a StubBroker drained by worker threads inside
  the web process (``embedded_worker_start``), so one command serves the whole site.
- ``redis://...``: RedisBroker; ``amqp://...``: RabbitmqBroker. Separate worker processes
  (``dramatiq mockups.worker -Q cpu webhooks`` and ``-Q gpu -p 1 -t 1``) consume them.

This module must be imported (and ``broker_setup`` called) before any actor is declared:
``mockups.jobs.apps`` does that.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware

logger = logging.getLogger(__name__)

QUEUE_CPU = "cpu"
QUEUE_GPU = "gpu"
QUEUE_WEBHOOKS = "webhooks"
ALL_QUEUES = (QUEUE_CPU, QUEUE_GPU, QUEUE_WEBHOOKS)


class DatabaseConnections(Middleware):
    """Closes stale Django connections around each message, as Django does around each request."""

    def _close(self) -> None:
        from django.db import close_old_connections

        close_old_connections()

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._close()

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        self._close()

    after_skip_message = after_process_message


def broker_create(
    url: str, *, namespace: str = "", heartbeat_timeout_ms: int = 60_000, maintenance_chance: int = 1000
) -> dramatiq.Broker:
    broker: dramatiq.Broker
    if not url:
        broker = StubBroker()
        broker.emit_after("process_boot")
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    elif url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(
            url=url,
            namespace=namespace or "dramatiq",
            heartbeat_timeout=heartbeat_timeout_ms,
            # Out of a million broker commands, how many also requeue the messages of dead workers.
            maintenance_chance=maintenance_chance,
        )
    else:
        raise ValueError(f"BROKER_URL {url!r} must start with redis://, rediss:// or amqp://")
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(DatabaseConnections())
    return broker


_setup_lock = threading.Lock()
_configured = False


def broker_setup() -> dramatiq.Broker:
    """Install the broker from settings as Dramatiq's global broker (once per process)."""
    global _configured
    from django.conf import settings

    with _setup_lock:
        if not _configured:
            broker = broker_create(
                settings.BROKER_URL,
                namespace=settings.QUEUE_NAMESPACE,
                heartbeat_timeout_ms=settings.BROKER_HEARTBEAT_TIMEOUT_MS,
                maintenance_chance=settings.BROKER_MAINTENANCE_CHANCE,
            )
            dramatiq.set_broker(broker)
            for queue in ALL_QUEUES:
                broker.declare_queue(queue)
            _configured = True
    return dramatiq.get_broker()


_embedded_workers: list[dramatiq.Worker] = []


def embedded_worker_start() -> None:
    """Start in-process workers for the embedded default: one GPU thread, two CPU/webhook threads.

    Idempotent. The GPU queue gets a single thread for the same reason a GPU box runs one
    worker process per GPU: one resident engine, one job on it at a time.
    """
    with _setup_lock:
        if _embedded_workers:
            return
        broker = dramatiq.get_broker()
        gpu = dramatiq.Worker(broker, queues={QUEUE_GPU}, worker_threads=1, worker_timeout=100)
        cpu = dramatiq.Worker(
            broker, queues={QUEUE_CPU, QUEUE_WEBHOOKS}, worker_threads=2, worker_timeout=100
        )
        for worker in (gpu, cpu):
            worker.start()
            _embedded_workers.append(worker)
    logger.info("embedded queue workers started (cpu, gpu, webhooks)")


def embedded_worker_stop() -> None:
    with _setup_lock:
        while _embedded_workers:
            _embedded_workers.pop().stop()
