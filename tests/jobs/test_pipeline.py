"""The job pipeline run by real Dramatiq workers in-process (StubBroker) on the tiny engine."""

from __future__ import annotations

import io

import dramatiq
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from mockups.jobs import events
from mockups.jobs.models import Job
from mockups.jobs.services import JobOptions, job_cancel, job_create, variation_regenerate
from mockups.jobs.tasks import job_generate
from mockups.jobs.uploads import upload_validate
from tests.factories import make_style
from tests.images import product_photo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def default_styles(transactional_db):
    """A transactional test starts from a flushed database: put the default styles back."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("mockups.catalog.migrations.0002_default_styles")
    migration.create_default_styles(apps, None)


def photo(size=(256, 256)) -> bytes:
    buffer = io.BytesIO()
    product_photo("bottle", width=size[0], height=size[1]).image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def heard(django_capture_on_commit_callbacks):
    messages: list[dict] = []

    def listener(job, message):
        messages.append(message)

    events.event_listener_add(listener)
    yield messages
    events._listeners.remove(listener)


def create(tenants, *, styles=None, count=None, data=None, **options) -> Job:
    return job_create(
        merchant=tenants.merchant,
        image=upload_validate(data or photo()),
        options=JobOptions(styles=styles or ["marble-kitchen"], count=count, **options),
    )


def test_a_job_becomes_five_pixel_exact_variations(tenants, engine_settings, run_queues, heard):
    job = create(
        tenants,
        styles=["marble-kitchen", "forest-moss", "concrete-loft", "sunlit-beach", "marketplace-white"],
    )
    run_queues()
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.cutout_method == "grabcut" and 0.0 <= job.cutout_confidence <= 1.0
    assert job.gpu_seconds > 0
    variations = list(job.variations.order_by("index"))
    assert [v.status for v in variations] == ["succeeded"] * 5
    assert all(v.fidelity_max_delta == 0 for v in variations)
    marketplace = variations[4]
    with default_storage.open(marketplace.image.name, "rb") as handle:
        assert Image.open(handle).size == (2000, 2000)

    seqs = [m["seq"] for m in heard]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    types = [m["type"] for m in heard]
    assert types[-1] == "job.status" and heard[-1]["status"] == "succeeded"
    assert types.count("variation.succeeded") == 5
    assert "variation.progress" in types


class Timeline(dramatiq.Middleware):
    """What happened, in order: each event as it is delivered and each stage message as it is sent."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    def before_enqueue(self, broker, message, delay) -> None:
        self.entries.append(f"send {message.actor_name}")

    def heard(self, job, message) -> None:
        self.entries.append(f"event {message['type']} {message.get('status', '')}".strip())


@pytest.fixture
def timeline(stub_broker):
    recorder = Timeline()
    stub_broker.add_middleware(recorder)
    events.event_listener_add(recorder.heard)
    yield recorder.entries
    events._listeners.remove(recorder.heard)


def test_a_stage_sends_its_events_before_the_message_that_starts_the_next(
    tenants, engine_settings, run_queues, timeline
):
    """Otherwise the next worker's "preparing" or "generating" can overtake "queued" on the socket."""
    job = create(tenants, count=2)
    run_queues()
    variation_regenerate(job=Job.objects.get(pk=job.pk), index=1, seed=5)
    run_queues()

    stages = [entry for entry in timeline if entry.startswith(("send job_", "event job."))]
    assert stages[:8] == [
        "event job.status queued",
        "send job_prepare",
        "event job.status preparing",
        "event job.cutout",
        "event job.status queued",
        "send job_generate",
        "event job.status generating",
        "event job.status succeeded",
    ]
    assert stages[8:] == [
        "event job.status queued",
        "send job_generate",
        "event job.status generating",
        "event job.status succeeded",
    ]


def test_a_queued_job_that_is_canceled_never_reaches_the_gpu(tenants, engine_settings, run_queues):
    job = create(tenants)
    job_cancel(job=job)
    run_queues()
    job.refresh_from_db()
    assert job.status == "canceled"
    assert job.prepared_at is None
    assert all(v.status == "canceled" and v.started_at is None for v in job.variations.all())


def test_a_running_job_stops_between_steps_when_canceled(tenants, engine_settings, run_queues, heard):
    style = make_style(slug="slow", steps=100)
    job = create(tenants, styles=[style.slug], count=2)

    def cancel_on_progress(_job, message):
        if message["type"] == "variation.progress" and message["step"] >= 2:
            job_cancel(job=Job.objects.get(pk=job.pk))

    events.event_listener_add(cancel_on_progress)
    try:
        run_queues()
    finally:
        events._listeners.remove(cancel_on_progress)
    job.refresh_from_db()
    assert job.status == "canceled"
    steps = [m["step"] for m in heard if m["type"] == "variation.progress"]
    assert steps and max(steps) < 100
    assert not any(v.image for v in job.variations.all())


def test_a_repeated_generate_message_changes_nothing_once_the_job_is_done(
    tenants, engine_settings, run_queues
):
    job = create(tenants, count=2)
    run_queues()
    before = {v.index: (v.image.name, v.seed) for v in Job.objects.get(pk=job.pk).variations.all()}
    job_generate.send(str(job.public_id))
    run_queues()
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert {v.index: (v.image.name, v.seed) for v in job.variations.all()} == before
    assert job.variations.count() == 2


def test_regenerating_a_variation_gives_it_a_new_seed_and_a_new_image(tenants, engine_settings, run_queues):
    job = create(tenants, count=2, seed=1234)
    run_queues()
    first = job.variations.get(index=1)
    assert (job.variations.get(index=0).seed, first.seed) == (1234, 1235)
    variation_regenerate(job=Job.objects.get(pk=job.pk), index=1, seed=99)
    run_queues()
    job.refresh_from_db()
    again = job.variations.get(index=1)
    assert job.status == "succeeded"
    assert again.seed == 99 and again.generation == 2
    assert again.image.name != first.image.name
    assert (
        job.variations.get(index=0).image.name
        == Job.objects.get(pk=job.pk).variations.get(index=0).image.name
    )


def test_a_photo_without_a_product_fails_once_with_a_clear_message(tenants, engine_settings, run_queues):
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (240, 240, 240)).save(buffer, format="PNG")
    job = create(tenants, data=buffer.getvalue())
    run_queues()
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error_code == "no_product"
    assert "product" in job.error.lower()
    assert job.attempts == 1
