"""Every admin page of every registered model loads with a bounded number of queries at hundreds of jobs.

The bound must not grow with the rows shown (no N+1): the same page with a few hundred jobs stays
under a fixed ceiling. How the lists behave at 100,000 jobs is measured by
``python -m tests.admin.bench_admin_lists`` (see its table); these tests keep the shape of the
queries honest.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from mockups.accounts.services import api_key_create
from mockups.api.models import WebhookDelivery
from mockups.api.services import uploaded_file_create
from mockups.catalog.models import BaseModel, ControlNetModel, Lora, StylePreview
from mockups.catalog.services import style_version_create
from mockups.fleet.models import GpuWorker
from mockups.jobs.models import Job
from tests.admin.conftest import make_jobs
from tests.factories import make_style, png_bytes

pytestmark = pytest.mark.django_db

# Session, user, the page's own queries; generous for inlines and filters, far below one per row.
MAX_QUERIES = 25


@pytest.fixture
def catalog(tiny_lora_dir):
    from django.core.files import File

    from mockups.catalog.services import lora_create
    from tests.admin.conftest import tiny_lora_file

    loras = []
    for n in range(3):
        with open(tiny_lora_file(tiny_lora_dir, seed=n), "rb") as handle:
            loras.append(lora_create(name=f"lora {n}", upload=File(handle, name=f"lora{n}.safetensors")))
    styles = [make_style(loras=[(loras[n % 3], 0.7)]) for n in range(6)]
    for style in styles[:3]:
        style_version_create(style=style, steps=20)
    BaseModel.objects.create(name="sdxl", source="stabilityai/stable-diffusion-xl-base-1.0", is_default=True)
    ControlNetModel.objects.create(
        name="canny", source="diffusers/controlnet-canny-sdxl-1.0", is_default=True
    )
    return loras, styles


@pytest.fixture
def world(catalog, tenants):
    loras, styles = catalog
    jobs = make_jobs(300, styles=styles[:5])
    for n in range(20):
        api_key_create(merchant=tenants.merchant, name=f"key {n}")
    for n in range(5):
        GpuWorker.objects.create(
            name=f"gpu-{n}:1",
            hostname=f"gpu-{n}",
            pid=1,
            queues=["gpu"],
            loras=[{"sha256": loras[0].sha256, "name": loras[0].name}],
            health={"models_resident": ["stabilityai/stable-diffusion-xl-base-1.0"]},
        )
    Group.objects.create(name="operators")
    for job in jobs[:100]:
        WebhookDelivery.objects.create(
            job=job,
            merchant=job.merchant,
            event="completed",
            webhook_id=f"msg_{job.public_id.hex}",
            url="https://shop.example/hook",
            attempt=1,
            status_code=200,
        )
    for n in range(20):
        uploaded_file_create(merchant=tenants.merchant, data=png_bytes(), filename=f"photo-{n}.png")
    for style in styles:
        StylePreview.objects.create(
            style=style, style_version=style.current_version, product="mug", job=jobs[0], variation_index=0
        )
    return jobs


def registered_models():
    return sorted(admin.site._registry, key=lambda model: model._meta.label)


READ_ONLY = {
    "jobs.Job",
    "jobs.Variation",
    "fleet.GpuWorker",
    "catalog.StylePreview",
    "catalog.StyleVersion",
    "api.WebhookDelivery",
    "api.UploadedFile",
}


@pytest.mark.parametrize("model", registered_models(), ids=lambda model: model._meta.label)
def test_every_admin_page_loads_with_a_bounded_number_of_queries(
    model, world, admin_client, django_assert_max_num_queries
):
    """The list, an object's page and the add page (or its refusal, for read-only models)."""
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    obj = model._default_manager.order_by("-pk").first()
    assert obj is not None, f"the test world has no {model._meta.label}"
    for url, expected in [
        (reverse(f"{name}_changelist"), 200),
        (reverse(f"{name}_change", args=[obj.pk]), 200),
        (reverse(f"{name}_add"), 403 if model._meta.label in READ_ONLY else 200),
    ]:
        with django_assert_max_num_queries(MAX_QUERIES):
            response = admin_client.get(url)
        assert response.status_code == expected, url


def test_the_job_list_costs_the_same_queries_at_300_jobs_as_at_30(
    catalog, admin_client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, styles = catalog
    make_jobs(30, styles=styles[:5])
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse("admin:jobs_job_changelist"))
    make_jobs(270, styles=styles[:5])
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(reverse("admin:jobs_job_changelist"))
    assert response.status_code == 200
    assert len(many) == len(few)
    assert Job.objects.count() == 300


def test_the_lora_list_costs_the_same_queries_for_3_and_30_loras(catalog, admin_client, tiny_lora_dir):
    from django.core.files import File
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mockups.catalog.services import lora_create
    from tests.admin.conftest import tiny_lora_file

    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse("admin:catalog_lora_changelist"))
    for n in range(3, 30):
        with open(tiny_lora_file(tiny_lora_dir, seed=n % 5, rank=2 + n % 3), "rb") as handle:
            lora = lora_create(name=f"more {n}", upload=File(handle, name="more.safetensors"))
        make_style(loras=[(lora, 0.5)])
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(reverse("admin:catalog_lora_changelist"))
    assert response.status_code == 200
    assert Lora.objects.count() == 30
    assert len(many) == len(few)


def test_the_health_page_loads_with_a_bounded_number_of_queries(
    world, admin_client, django_assert_max_num_queries
):
    with django_assert_max_num_queries(MAX_QUERIES):
        response = admin_client.get(reverse("admin:health"))
    assert response.status_code == 200
    assert b"gpu-0:1" in response.content


@pytest.mark.postgres
def test_an_unfiltered_job_list_on_postgresql_reads_the_planners_estimate_instead_of_counting(
    catalog, admin_client, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mockups.jobs import admin as jobs_admin

    if connection.vendor != "postgresql":
        pytest.skip("the estimate is PostgreSQL's pg_class.reltuples")
    _, styles = catalog
    make_jobs(120, styles=styles[:1])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    monkeypatch.setattr(jobs_admin, "EXACT_COUNT_BELOW", 100)  # as if the table were large

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:jobs_job_changelist"))
    assert response.context["cl"].result_count == 120
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "jobs_job" in q["sql"]]
    assert counts == []
    # A filtered list is counted exactly.
    filtered = admin_client.get(reverse("admin:jobs_job_changelist"), {"status__exact": "succeeded"})
    assert filtered.context["cl"].result_count == 120
