"""Fixtures for running the real actors in-process on a StubBroker (tests about our own logic)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from mockups.jobs import tasks
from mockups.queue import ALL_QUEUES, DatabaseConnections

ROOT = Path(__file__).resolve().parents[2]


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
    """Point the real actors at a fresh StubBroker for this test, whatever the settings chose."""
    broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    broker.add_middleware(DatabaseConnections())
    broker.emit_after("process_boot")
    previous = dramatiq.get_broker()
    actors = [tasks.job_prepare, tasks.job_generate]
    old = {actor: actor.broker for actor in actors}
    dramatiq.set_broker(broker)
    for queue in ALL_QUEUES:
        broker.declare_queue(queue)
    for actor in actors:
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
