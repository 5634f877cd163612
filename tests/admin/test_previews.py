"""The preview action renders styles on the reference products through the real queue and tiny engine."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image

from mockups.catalog.models import PreviewStatus, Style, StylePreview
from mockups.catalog.reference_products import REFERENCE_PRODUCT_KEYS
from mockups.catalog.selectors import style_list_for_merchant
from mockups.catalog.services import PREVIEWS_MERCHANT_PUBLIC_ID, THUMBNAIL_SIDE
from mockups.jobs.models import Job, JobSource
from tests.factories import make_style

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def render_previews(client, styles: list[Style]):
    return client.post(
        reverse("admin:catalog_style_changelist"),
        {"action": "render_previews", "_selected_action": [style.pk for style in styles]},
        follow=True,
    )


def test_the_preview_action_fills_each_styles_thumbnails_through_the_queue(
    admin_client, tenants, engine_settings, run_queues
):
    generated = make_style(name="Moss", prompt_template="{product} on green moss", steps=3)
    studio = make_style(
        name="Grey studio", prompt_template="{product}", backdrop="studio", studio_fill="solid"
    )
    restricted = make_style(name="Only Acme", prompt_template="{product} on slate", steps=3)
    restricted.restricted_to.add(tenants.merchant)
    disabled = make_style(name="Retired")
    Style.objects.filter(pk=disabled.pk).update(is_enabled=False)

    response = render_previews(admin_client, [generated, studio, restricted, disabled])
    page = response.content.decode()
    assert "Queued 9 previews in 3 jobs" in page
    assert "Skipped Retired: it is disabled" in page

    jobs = list(Job.objects.filter(source=JobSource.PREVIEW))
    assert len(jobs) == 3  # one per reference product, each with one variation per style
    assert {job.merchant.public_id for job in jobs} == {PREVIEWS_MERCHANT_PUBLIC_ID}
    assert {job.product_name for job in jobs} == {
        "a white ceramic coffee mug",
        "a green glass bottle",
        "a red canvas sneaker",
    }

    run_queues()

    for job in jobs:
        job.refresh_from_db()
        assert job.status == "succeeded", job.error
        assert job.cutout_method == "alpha"  # the reference products carry their exact cutout
    previews = list(StylePreview.objects.select_related("style"))
    assert len(previews) == 9
    assert {(p.style.name, p.product) for p in previews} == {
        (name, product) for name in ("Moss", "Grey studio", "Only Acme") for product in REFERENCE_PRODUCT_KEYS
    }
    for preview in previews:
        assert preview.status == PreviewStatus.SUCCEEDED, preview.error
        with default_storage.open(preview.image.name, "rb") as handle:
            thumbnail = Image.open(io.BytesIO(handle.read()))
        assert thumbnail.format == "JPEG" and thumbnail.size == (THUMBNAIL_SIDE, THUMBNAIL_SIDE)

    # The mug preview is the tile merchants pick the style from.
    for style in (generated, studio, restricted):
        style.refresh_from_db()
        mug = next(p for p in previews if p.style_id == style.pk and p.product == "mug")
        assert style.thumbnail.name == mug.image.name
    disabled.refresh_from_db()
    assert not disabled.thumbnail and not StylePreview.objects.filter(style=disabled).exists()
    tiles = {style.name: style.thumbnail.name for style in style_list_for_merchant(merchant=tenants.merchant)}
    assert tiles["Moss"] and tiles["Grey studio"] and tiles["Only Acme"]
    # Previewing a restricted style does not offer it to anyone else.
    assert "Only Acme" not in {s.name for s in style_list_for_merchant(merchant=tenants.other_merchant)}

    page = admin_client.get(reverse("admin:catalog_style_change", args=[generated.pk])).content.decode()
    assert page.count('alt="Moss on the ') == 3


def test_a_failed_preview_job_marks_its_previews_failed(admin_client, engine_settings, run_queues):
    from mockups.jobs.services import job_cancel

    style = make_style(name="Moss", prompt_template="{product} on green moss", steps=3)
    render_previews(admin_client, [style])
    for job in Job.objects.filter(source=JobSource.PREVIEW):
        job_cancel(job=job)
    run_queues()
    statuses = set(StylePreview.objects.values_list("status", flat=True))
    assert statuses == {PreviewStatus.FAILED}
    assert "canceled" in StylePreview.objects.first().error
    style.refresh_from_db()
    assert not style.thumbnail
