"""The GPU workers' rows, the health page, base models and ControlNets, and the reference products."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from mockups.catalog.models import BaseModel, ControlNetModel
from mockups.catalog.reference_products import (
    REFERENCE_PRODUCT_KEYS,
    reference_product_image,
    reference_product_png,
)
from mockups.catalog.services import lora_create
from mockups.fleet.heartbeat import Heartbeat, json_safe
from mockups.fleet.models import GpuWorker
from mockups.fleet.selectors import gpu_workers_seen
from tests.admin.conftest import tiny_lora_file

pytestmark = pytest.mark.django_db

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
CANNY = "diffusers/controlnet-canny-sdxl-1.0"


def worker(name: str, *, seen_s_ago: float = 1.0, models=(SDXL, CANNY), loras=()) -> GpuWorker:
    return GpuWorker.objects.create(
        name=name,
        hostname=name.split(":")[0],
        pid=int(name.split(":")[1]),
        queues=["gpu"],
        last_seen_at=timezone.now() - timedelta(seconds=seen_s_ago),
        health={"device": "cuda:0", "device_name": "NVIDIA H100", "models_resident": list(models)},
        loras=[{"sha256": sha, "name": name} for sha, name in loras],
    )


def test_only_workers_heard_from_recently_count_as_seen(settings):
    settings.FLEET_WORKER_STALE_S = 30
    worker("gpu-a:1", seen_s_ago=3)
    worker("gpu-b:1", seen_s_ago=45)
    assert [w.name for w in gpu_workers_seen()] == ["gpu-a:1"]
    assert [w.name for w in gpu_workers_seen(within_s=60)] == ["gpu-a:1", "gpu-b:1"]


def test_the_health_page_shows_which_worker_holds_which_model_and_lora(admin_client, tiny_lora_dir):
    BaseModel.objects.create(name="SDXL base", source=SDXL, is_default=True)
    BaseModel.objects.create(name="Juggernaut", source="/models/juggernaut-xl")
    ControlNetModel.objects.create(name="Canny", source=CANNY, is_default=True)
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(name="Grain", upload=ContentFile(handle.read(), name="g.safetensors"))
    worker("gpu-a:1", loras=[(lora.sha256, "Grain")])
    worker("gpu-b:2")
    worker("gpu-old:3", seen_s_ago=3600)

    response = admin_client.get(reverse("admin:health"))
    assert response.status_code == 200
    context = response.context
    assert [row["worker"].name for row in context["live"]] == ["gpu-a:1", "gpu-b:2"]
    assert [w.name for w in context["stale"]] == ["gpu-old:3"]
    models = {row["name"]: row["cells"] for row in context["model_rows"]}
    assert models == {"SDXL base": [True, True], "Juggernaut": [False, False], "Canny": [True, True]}
    assert [row["cells"] for row in context["lora_rows"]] == [[True, False]]
    html = response.content.decode()
    assert "NVIDIA H100" in html and "GPU health" in html  # the page, and the link on every admin page


def test_the_model_lists_show_where_each_model_is_resident(admin_client):
    BaseModel.objects.create(name="SDXL base", source=SDXL, is_default=True)
    worker("gpu-a:1")
    response = admin_client.get(reverse("admin:catalog_basemodel_changelist"))
    assert [m.resident_on for m in response.context["cl"].result_list] == [["gpu-a:1"]]


def test_registering_a_model_checks_its_source(admin_client):
    url = reverse("admin:catalog_basemodel_add")
    for source, ok in [
        (SDXL, True),
        ("/srv/models/sdxl-base", True),
        ("relative/../folder/x", False),
        ("https://huggingface.co/stabilityai/sdxl", False),
        ("just-a-name", False),
    ]:
        response = admin_client.post(url, {"name": f"m {source}", "source": source, "dtype": "fp16"})
        assert (response.status_code == 302) is ok, source


def test_making_a_model_the_default_unsets_the_previous_one(admin_client):
    old = BaseModel.objects.create(name="old", source=SDXL, is_default=True)
    response = admin_client.post(
        reverse("admin:catalog_basemodel_add"),
        {"name": "new", "source": "/models/new", "dtype": "bf16", "make_default": "on"},
    )
    assert response.status_code == 302
    assert list(BaseModel.objects.filter(is_default=True).values_list("name", flat=True)) == ["new"]
    old.refresh_from_db()
    assert not old.is_default

    admin_client.post(
        reverse("admin:catalog_basemodel_changelist"),
        {"action": "make_default", "_selected_action": [old.pk]},
    )
    assert list(BaseModel.objects.filter(is_default=True).values_list("name", flat=True)) == ["old"]


def test_a_controlnet_is_registered_with_its_dtype_and_default(admin_client):
    response = admin_client.post(
        reverse("admin:catalog_controlnetmodel_add"),
        {"name": "canny", "source": CANNY, "dtype": "fp16", "make_default": "on"},
    )
    assert response.status_code == 302
    model = ControlNetModel.objects.get()
    assert (model.source, model.dtype, model.is_default) == (CANNY, "fp16", True)


def test_a_heartbeat_keeps_reporting_when_the_engine_health_fails():
    def broken() -> dict:
        raise RuntimeError("CUDA error: device-side assert triggered")

    row = Heartbeat(get_engine_health=broken, name="gpu-z:9").tick()
    assert row.health["error"] == "RuntimeError: CUDA error: device-side assert triggered"
    assert row.last_seen_at > timezone.now() - timedelta(seconds=5)


def test_a_heartbeat_forgets_workers_silent_for_a_day():
    worker("gpu-gone:1", seen_s_ago=2 * 86400)
    Heartbeat(get_engine_health=lambda: {"kind": "tiny"}, name="gpu-new:2").tick()
    assert list(GpuWorker.objects.values_list("name", flat=True)) == ["gpu-new:2"]


def test_health_reports_are_made_storable_in_a_json_column():
    report = {"p50": float("nan"), "peak": float("inf"), "shape": (1, 2), "ok": True, "path": object.__name__}
    assert json_safe(report) == {"p50": None, "peak": None, "shape": [1, 2], "ok": True, "path": "object"}


@pytest.mark.parametrize("key", REFERENCE_PRODUCT_KEYS)
def test_reference_products_have_an_exact_alpha_and_are_drawn_the_same_every_time(key):
    image = reference_product_image(key, size=256)
    assert image.mode == "RGBA" and image.size == (256, 256)
    alpha = np.asarray(image.getchannel("A"))
    assert set(np.unique(alpha)) == {0, 255}
    assert 0.1 < float(np.mean(alpha == 255)) < 0.5  # a product, with room around it
    assert reference_product_png(key, size=256) == reference_product_png(key, size=256)


@pytest.mark.django_db(transaction=True)
def test_a_started_heartbeat_reports_on_its_own_thread_until_stopped():
    import threading

    ticks: list[GpuWorker] = []
    two = threading.Event()

    def on_tick(row: GpuWorker) -> None:
        ticks.append(row)
        if len(ticks) >= 2:
            two.set()

    heartbeat = Heartbeat(
        get_engine_health=lambda: {"kind": "tiny", "base_model": "/m/sdxl", "controlnet": "/m/cn"},
        queues=("gpu",),
        interval_s=0.05,
        on_tick=on_tick,
        name="gpu-thread:1",
    ).start()
    try:
        assert two.wait(timeout=30)
    finally:
        heartbeat.stop()
    assert heartbeat._thread is not None and not heartbeat._thread.is_alive()  # stopped for good
    row = GpuWorker.objects.get(name="gpu-thread:1")
    assert row.health["models_resident"] == ["/m/sdxl", "/m/cn"] and row.queues == ["gpu"]
    assert ticks[-1].last_seen_at > ticks[0].last_seen_at
