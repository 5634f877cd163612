"""The merchant's pages and JSON endpoints: login, upload errors, tenancy, downloads."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from mockups.jobs.models import Job
from tests.factories import make_job, make_style

pytestmark = pytest.mark.django_db


def png(size=(200, 200)) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, (235, 235, 235))
    image.paste((180, 40, 40), (50, 50, 150, 150))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(client, data: bytes, *, name="p.png", **fields):
    payload = {"image": ContentFile(data, name=name), **fields}
    return client.post("/jobs/", payload)


@pytest.fixture
def owner_client(client, tenants):
    client.force_login(tenants.owner)
    return client


def test_pages_need_a_login(client):
    response = client.get("/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.post("/jobs/").status_code == 302


def test_the_studio_lists_the_styles_the_merchant_may_use(owner_client, tenants):
    hidden = make_style(slug="for-others", name="Only for others")
    hidden.restricted_to.add(tenants.other_merchant)
    page = owner_client.get("/").content.decode()
    assert "Marketplace white" in page
    assert "Only for others" not in page
    assert "demo model" in page  # the tiny engine is active


def test_an_upload_creates_a_job_with_one_variation_per_style(owner_client, tenants):
    response = upload(owner_client, png(), styles=["marble-kitchen", "forest-moss"], product_name="mug")
    assert response.status_code == 201, response.content
    body = response.json()
    job = Job.objects.get(public_id=body["id"])
    assert job.merchant == tenants.merchant and job.source == "web"
    assert [v["style"] for v in body["variations"]] == ["Marble kitchen", "Forest moss"]
    assert body["status"] == "queued" and body["position"] == 1


def test_one_style_with_a_count_makes_that_many_seeds(owner_client):
    body = upload(owner_client, png(), styles=["marble-kitchen"], count="5", seed="10").json()
    assert [v["seed"] for v in body["variations"]] == [10, 11, 12, 13, 14]


@pytest.mark.parametrize(
    ("data", "fields", "status", "fragment"),
    [
        (b"", {"styles": ["marble-kitchen"]}, None, ""),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", {"styles": ["marble-kitchen"]}, None, "SVG"),
        (b"\x89PNG\r\n\x1a\n<html>", {"styles": ["marble-kitchen"]}, None, ""),
        (None, {"styles": ["no-such-style"]}, 404, "Unknown style"),
        (None, {}, 422, "at least one style"),
        (None, {"styles": ["a", "b", "c", "d", "e", "f"]}, 422, "at most 5"),
        (None, {"styles": ["marble-kitchen"], "count": "9"}, 422, "count"),
        (None, {"styles": ["marble-kitchen"], "count": "many"}, 422, "whole number"),
    ],
)
def test_a_bad_upload_is_a_clear_4xx_and_leaves_nothing_behind(
    owner_client, settings, data, fields, status, fragment
):
    response = upload(owner_client, png() if data is None else data, **fields)
    assert 400 <= response.status_code < 500
    if status:
        assert response.status_code == status
    body = response.json()
    assert body["error"] and fragment in body["error"]
    assert Job.objects.count() == 0
    media = settings.MEDIA_ROOT
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_a_missing_photo_is_explained(owner_client):
    response = owner_client.post("/jobs/", {"styles": ["marble-kitchen"]})
    assert response.status_code == 422
    assert "photo" in response.json()["error"]


def test_too_many_active_jobs_is_a_429_with_retry_after(owner_client, tenants):
    tenants.merchant.max_active_jobs = 1
    tenants.merchant.save()
    assert upload(owner_client, png(), styles=["marble-kitchen"]).status_code == 201
    response = upload(owner_client, png(), styles=["marble-kitchen"])
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_another_merchants_job_is_not_found_everywhere(owner_client, tenants):
    style = make_style()
    theirs = make_job(merchant=tenants.other_merchant, styles=[style], status="succeeded")
    for method, path in [
        ("get", f"/jobs/{theirs.public_id}.json"),
        ("get", f"/jobs/{theirs.public_id}/"),
        ("get", f"/jobs/{theirs.public_id}/mockups.zip"),
        ("post", f"/jobs/{theirs.public_id}/cancel"),
        ("post", f"/jobs/{theirs.public_id}/variations/0/regenerate"),
        ("get", f"/jobs/{uuid.uuid4()}.json"),
    ]:
        response = getattr(owner_client, method)(path)
        assert response.status_code == 404, (method, path)
    theirs.refresh_from_db()
    assert theirs.status == "succeeded"


def test_history_lists_only_the_merchants_jobs(owner_client, tenants):
    make_job(merchant=tenants.merchant, product_name="my mug")
    make_job(merchant=tenants.other_merchant, product_name="their bottle")
    page = owner_client.get("/history/").content.decode()
    assert "my mug" in page and "their bottle" not in page


def test_cancelling_a_queued_job_cancels_it_at_once(owner_client, tenants):
    job = make_job(merchant=tenants.merchant, styles=[make_style()])
    body = owner_client.post(f"/jobs/{job.public_id}/cancel").json()
    assert body["status"] == "canceled"
    assert body["variations"][0]["status"] == "canceled"


def test_the_zip_holds_every_finished_image(owner_client, tenants):
    style = make_style()
    job = make_job(merchant=tenants.merchant, styles=[style, style], status="succeeded")
    for variation in job.variations.all():
        variation.image.save(f"v{variation.index}.png", ContentFile(png((64, 64))))
    response = owner_client.get(f"/jobs/{job.public_id}/mockups.zip")
    assert response.status_code == 200
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert len(names) == 2


def test_a_zip_of_a_job_without_images_is_a_clear_4xx(owner_client, tenants):
    job = make_job(merchant=tenants.merchant, styles=[make_style()])
    response = owner_client.get(f"/jobs/{job.public_id}/mockups.zip")
    assert response.status_code == 422
    assert "no finished images" in response.json()["error"]


def test_signed_image_links_work_without_a_session_and_fail_when_tampered(client, owner_client, tenants):
    job = make_job(merchant=tenants.merchant, styles=[make_style()])
    url = owner_client.get(f"/jobs/{job.public_id}.json").json()["original"]
    assert client.get(url).status_code == 200
    assert client.get(url[:-3] + "AAA").status_code == 404
