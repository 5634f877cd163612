"""Fixtures shared by the whole suite: isolated media storage and the three-merchant world."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from mockups.api import tasks as api_tasks
from mockups.jobs import tasks as job_tasks
from mockups.queue import ALL_QUEUES, DatabaseConnections
from tests.factories import make_merchant, make_user

ROOT = Path(__file__).resolve().parents[1]
QUEUE_ACTORS = [
    job_tasks.job_prepare,
    job_tasks.job_generate,
    api_tasks.webhook_send,
    api_tasks.prediction_deadline,
]


@pytest.fixture(autouse=True)
def _isolated_media(settings: Any, tmp_path: Path) -> None:
    """Every test writes its files into its own folder, never into the developer's data."""
    settings.MEDIA_ROOT = tmp_path / "media"


@dataclass
class Tenants:
    """An owner and a teammate of one merchant, and a stranger who works for another."""

    merchant: Any
    owner: Any
    teammate: Any
    other_merchant: Any
    stranger: Any


@pytest.fixture
def tenants(db: None) -> Tenants:
    merchant = make_merchant("Acme Mugs")
    other = make_merchant("Bolt Bottles")
    return Tenants(
        merchant=merchant,
        owner=make_user(merchant=merchant, role="owner"),
        teammate=make_user(merchant=merchant, role="member"),
        other_merchant=other,
        stranger=make_user(merchant=other, role="owner"),
    )


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """The tiny engine's models, built once for the whole run (and reused across runs)."""
    from gpu_runtime.tiny import ensure_tiny_models

    folder = Path(os.environ.get("TEST_TINY_MODELS_DIR", ROOT / "var" / "test-models" / "tiny"))
    return ensure_tiny_models(folder)


@pytest.fixture
def engine_settings(settings, tiny_models_dir):
    settings.MOCKUP_ENGINE = "tiny"
    settings.TINY_MODELS_DIR = tiny_models_dir
    settings.REMBG_MODEL_DIR = tiny_models_dir.parent / "no-rembg-here"
    settings.REMBG_ALLOW_FALLBACK = True
    return settings


@pytest.fixture
def stub_broker() -> Iterator[StubBroker]:
    """Point every real actor at a fresh StubBroker for this test, whatever the settings chose
    (with REDIS_URL set they choose Redis): nothing a test enqueues reaches a shared broker."""
    broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(DatabaseConnections())
    broker.emit_after("process_boot")
    previous = dramatiq.get_broker()
    old = {actor: actor.broker for actor in QUEUE_ACTORS}
    dramatiq.set_broker(broker)
    for queue in ALL_QUEUES:
        broker.declare_queue(queue)
    for actor in QUEUE_ACTORS:
        actor.broker = broker
        broker.declare_actor(actor)
    yield broker
    broker.flush_all()
    for actor, original in old.items():
        actor.broker = original
    dramatiq.set_broker(previous)


@pytest.fixture
def run_queues(stub_broker):
    """Drain the queues with a real Dramatiq worker (threads in this process)."""

    def run(*, timeout_ms: int = 120_000) -> None:
        worker = dramatiq.Worker(stub_broker, worker_threads=1, worker_timeout=50)
        worker.start()
        try:
            for _ in range(6):  # a stage may enqueue the next one (prepare -> generate)
                for queue in ALL_QUEUES:
                    stub_broker.join(queue, fail_fast=True, timeout=timeout_ms)
                worker.join()
        finally:
            worker.stop()

    return run
