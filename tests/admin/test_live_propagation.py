"""A changed LoRA takes effect on the next job without restarting the worker; preloads reach the engine.

Jobs run through the real actors on a StubBroker with the tiny engine, all in this process: the
worker's engine is the process's one resident engine, so "no restart" is checked by its identity.
"""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from mockups.catalog.models import Lora
from mockups.catalog.reference_products import reference_product_png
from mockups.catalog.services import lora_create, lora_preload_request, lora_replace_file
from mockups.fleet.heartbeat import Heartbeat
from mockups.fleet.models import GpuWorker
from mockups.fleet.selectors import gpu_workers_seen
from mockups.jobs import runtime
from mockups.jobs.services import JobOptions, job_create
from mockups.jobs.uploads import upload_validate
from tests.admin.conftest import sha256_of, tiny_lora_file
from tests.factories import make_style

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def lora_bytes(folder, *, seed: int) -> bytes:
    # A strong LoRA (scale 4) so a different file visibly changes the tiny engine's output.
    return tiny_lora_file(folder, seed=seed, rank=4, scale=4.0).read_bytes()


def render(tenants, style, run_queues) -> bytes:
    """One variation of ``style`` on the bottle with a fixed seed; returns the stored image bytes."""
    job = job_create(
        merchant=tenants.merchant,
        image=upload_validate(reference_product_png("bottle", size=256)),
        options=JobOptions(styles=[style.slug], seed=1234, product_name="bottle"),
    )
    run_queues()
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    variation = job.variations.get()
    with default_storage.open(variation.image.name, "rb") as handle:
        return handle.read()


def test_a_changed_lora_is_used_by_the_next_job_without_a_worker_restart(
    tenants, engine_settings, run_queues, tiny_lora_dir
):
    first, second = lora_bytes(tiny_lora_dir, seed=11), lora_bytes(tiny_lora_dir, seed=12)
    lora = lora_create(name="Texture", upload=ContentFile(first, name="texture.safetensors"))
    style = make_style(prompt_template="{product} on a table", steps=3, loras=[(lora, 1.0)])

    before = render(tenants, style, run_queues)
    engine = runtime.engine()
    loads = engine.loras.stats()["loads_from_disk"]

    lora_replace_file(lora=lora, upload=ContentFile(second, name="texture-v2.safetensors"))
    after = render(tenants, style, run_queues)

    assert runtime.engine() is engine  # the same resident engine: nothing restarted
    assert after != before  # same seed, same photo, same style version: only the LoRA's file changed
    stats = engine.loras.stats()
    assert stats["loads_from_disk"] == loads + 1  # the new file was read once, by its new hash
    assert lora.sha256 in {entry["sha256"] for entry in stats["cached"]}

    # Back to the first file: its hash is still in the RAM cache, and the image is the first one again.
    lora_replace_file(lora=lora, upload=ContentFile(first, name="texture.safetensors"))
    assert render(tenants, style, run_queues) == before
    assert engine.loras.stats()["loads_from_disk"] == loads + 1


def test_a_style_edited_in_the_admin_is_used_by_the_next_job(
    admin_client, tenants, engine_settings, run_queues
):
    from tests.admin.conftest import admin_form_data

    style = make_style(prompt_template="{product} on a table", backdrop="studio", studio_fill="solid")
    url = reverse("admin:catalog_style_change", args=[style.pk])
    data = admin_form_data(admin_client.get(url))
    data["studio_color"] = "#204080"
    assert admin_client.post(url, data).status_code == 302

    job = job_create(
        merchant=tenants.merchant,
        image=upload_validate(reference_product_png("mug", size=256)),
        options=JobOptions(styles=[style.slug], seed=1),
    )
    run_queues()
    job.refresh_from_db()
    variation = job.variations.select_related("style_version").get()
    assert variation.style_version.number == 2 and job.status == "succeeded"
    from PIL import Image

    with default_storage.open(variation.image.name, "rb") as handle:
        corner = Image.open(handle).convert("RGB").getpixel((2, 2))
    assert corner == (0x20, 0x40, 0x80)


def test_the_heartbeat_reports_the_engine_and_carries_out_lora_preloads(engine_settings, tiny_lora_dir):
    engine = runtime.engine()
    heartbeat = Heartbeat(get_engine_health=engine.health, lora_preload=engine.lora_preload, queues=("gpu",))
    data = lora_bytes(tiny_lora_dir, seed=21)
    lora = lora_create(name="Preloaded", upload=ContentFile(data, name="p.safetensors"))
    assert lora.sha256 not in {entry["sha256"] for entry in engine.loras.cached()}

    worker = heartbeat.tick()
    assert worker.queues == ["gpu"] and worker.health["kind"] == "tiny"
    assert worker.health["models_resident"] == [engine.config.base_model, engine.config.controlnet]
    assert [w.name for w in gpu_workers_seen()] == [worker.name]

    lora_preload_request(loras=Lora.objects.filter(pk=lora.pk))
    heartbeat.tick()
    heartbeat.wait_for_preloads(timeout=120)
    assert lora.sha256 in {entry["sha256"] for entry in engine.loras.cached()}
    worker = heartbeat.tick()
    assert {"sha256": lora.sha256, "name": "Preloaded"} in worker.loras
    assert worker.preload_done_at == Lora.objects.get(pk=lora.pk).preload_requested_at

    # Carried out once: a later tick does not load it again.
    loads = engine.loras.stats()["loads_from_disk"]
    heartbeat.tick()
    heartbeat.wait_for_preloads(timeout=120)
    assert engine.loras.stats()["loads_from_disk"] == loads


def test_a_preload_that_fails_is_reported_on_the_workers_row(engine_settings, tiny_lora_dir):
    engine = runtime.engine()
    heartbeat = Heartbeat(get_engine_health=engine.health, lora_preload=engine.lora_preload)
    lora = lora_create(
        name="Vanishing", upload=ContentFile(lora_bytes(tiny_lora_dir, seed=22), name="v.safetensors")
    )
    default_storage.delete(lora.file.name)  # the file is gone from the shared storage
    lora_preload_request(loras=[lora])
    heartbeat.tick()
    heartbeat.wait_for_preloads(timeout=120)
    worker = heartbeat.tick()
    assert any(
        "Vanishing" in problem and "not found" in problem for problem in worker.health["preload_errors"]
    )
    assert GpuWorker.objects.count() == 1


def test_the_lora_file_on_disk_is_what_the_catalog_says(tiny_lora_dir):
    data = lora_bytes(tiny_lora_dir, seed=11)
    lora = lora_create(name="Checked", upload=ContentFile(data, name="c.safetensors"))
    assert sha256_of(__import__("pathlib").Path(lora.file.path)) == lora.sha256
