"""The native API, /api/v1/: creating, reading, listing, canceling and regenerating mockup jobs."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from mockups.api.models import JobApiContext
from mockups.catalog.selectors import style_list_for_merchant
from mockups.jobs.models import Job, JobSource
from tests.api.conftest import ApiClient, data_uri, job_run_through_services, photo_bytes
from tests.factories import make_job, make_style

pytestmark = pytest.mark.django_db

STYLES = ["marble-kitchen", "forest-moss", "concrete-loft", "sunlit-beach", "marketplace-white"]


def upload(name: str = "mug.png", data: bytes | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data or photo_bytes(), content_type="image/png")


def test_a_multipart_upload_creates_a_job_with_one_variation_per_style(api):
    response = api.post_multipart(
        "/api/v1/mockups", {"image": upload(), "styles": STYLES[:3], "seed": "7", "product_name": "mug"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert [v["style"] for v in body["variations"]] == STYLES[:3]
    assert [v["seed"] for v in body["variations"]] == [7, 8, 9]
    assert body["queue_position"] == 1
    assert body["original"].startswith("http://testserver/media/s/")
    assert response["Location"] == body["urls"]["get"]
    job = Job.objects.get(public_id=body["id"])
    assert job.source == JobSource.API and job.product_name == "mug"


def test_json_with_a_data_uri_creates_a_job_with_the_chosen_options(api):
    response = api.post(
        "/api/v1/mockups",
        {
            "image": data_uri(photo_bytes()),
            "styles": ["forest-moss"],
            "count": 3,
            "steps": 12,
            "guidance": 4.5,
            "negative_prompt": "blurry",
            "output_preset": "portrait_4_5",
            "output_format": "webp",
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert [v["style"] for v in body["variations"]] == ["forest-moss"] * 3
    assert body["parameters"] == {
        "seed": None,
        "steps": 12,
        "guidance": 4.5,
        "negative_prompt": "blurry",
        "output_preset": "portrait_4_5",
        "output_format": "webp",
    }


def test_without_styles_a_job_gets_the_first_five_styles(api):
    response = api.post("/api/v1/mockups", {"image": data_uri(photo_bytes())})
    assert response.status_code == 201, response.content
    assert len(response.json()["variations"]) == 5


def test_json_may_name_a_file_uploaded_to_v1_files(api):
    uploaded = api.client.post(
        "/v1/files", {"content": upload()}, HTTP_AUTHORIZATION=f"Bearer {api.key}"
    ).json()
    response = api.post("/api/v1/mockups", {"image": uploaded["urls"]["get"], "styles": ["forest-moss"]})
    assert response.status_code == 201, response.content


def test_a_url_that_is_not_an_uploaded_file_is_refused_and_never_fetched(api):
    response = api.post(
        "/api/v1/mockups", {"image": "http://169.254.169.254/latest/meta-data", "styles": ["forest-moss"]}
    )
    assert response.status_code == 422
    problem = response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in problem["errors"]] == ["image"]


def test_validation_errors_name_each_bad_field(api):
    response = api.post(
        "/api/v1/mockups",
        {
            "image": data_uri(photo_bytes()),
            "styles": ["forest-moss"],
            "steps": 0,
            "guidance": 99,
            "output_format": "gif",
        },
    )
    assert response.status_code == 422
    problem = response.json()
    assert {e["field"] for e in problem["errors"]} == {"steps", "guidance", "output_format"}
    assert problem["status"] == 422 and problem["type"].endswith("invalid_parameters")
    assert problem["title"] and problem["detail"]


def test_rules_checked_by_the_service_also_name_their_field(api):
    response = api.post(
        "/api/v1/mockups",
        {"image": data_uri(photo_bytes()), "styles": ["forest-moss", "concrete-loft"], "count": 2},
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["count"]


def test_an_unknown_style_is_a_422_on_styles(api):
    response = api.post("/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["no-such-style"]})
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "unknown_style"
    assert [e["field"] for e in problem["errors"]] == ["styles"]


def test_a_file_that_is_not_a_photo_is_refused_with_the_intake_message(api):
    response = api.post_multipart(
        "/api/v1/mockups",
        {"image": SimpleUploadedFile("a.png", b"<html>not an image</html>"), "styles": ["forest-moss"]},
    )
    assert response.status_code == 415
    assert response.json()["code"] == "image_unsupported_type"


def test_a_body_that_is_neither_json_nor_multipart_is_415(api):
    response = api.client.post(
        "/api/v1/mockups", "image=x", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {api.key}"
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_the_same_idempotency_key_returns_the_first_job_and_creates_nothing(api):
    body = {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}
    first = api.post("/api/v1/mockups", body, headers={"Idempotency-Key": "order-1234"})
    again = api.post("/api/v1/mockups", body, headers={"Idempotency-Key": "order-1234"})
    other = api.post("/api/v1/mockups", body, headers={"Idempotency-Key": "order-1235"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 2


def test_the_limit_of_queued_and_running_jobs_answers_429_with_retry_after(api, world):
    merchant = world.acme.merchant
    merchant.max_active_jobs = 2
    merchant.save()
    styles = [make_style()]
    make_job(merchant=merchant, styles=styles, status="queued")
    make_job(merchant=merchant, styles=styles, status="generating")
    make_job(
        merchant=world.bolt.merchant, styles=styles, status="queued"
    )  # another shop's job does not count
    response = api.post("/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["code"] == "too_many_jobs"


def test_outputs_are_signed_urls_that_need_no_key(api):
    created = api.post(
        "/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"], "count": 2}
    ).json()
    job_run_through_services(Job.objects.get(public_id=created["id"]), gpu_seconds=1.8)
    body = api.get(f"/api/v1/mockups/{created['id']}").json()
    assert body["status"] == "succeeded"
    anonymous = Client()
    for url in [body["cutout"], body["mask"], body["original"], *(v["image"] for v in body["variations"])]:
        assert url.startswith("http://testserver/media/s/")
        response = anonymous.get(url.removeprefix("http://testserver"))
        assert response.status_code == 200
        Image.open(io.BytesIO(b"".join(response.streaming_content))).verify()
    tampered = body["variations"][0]["image"].removeprefix("http://testserver")
    assert anonymous.get(tampered[:-2] + ("xy" if not tampered.endswith("xy") else "zz")).status_code == 404


def test_each_variation_reports_fidelity_seed_and_gpu_time_and_the_job_its_cost(api, settings):
    settings.GPU_HOURLY_PRICE = 3.60  # one GPU second costs 0.001
    created = api.post(
        "/api/v1/mockups",
        {"image": data_uri(photo_bytes()), "styles": ["forest-moss"], "count": 2, "seed": 40},
    ).json()
    job_run_through_services(Job.objects.get(public_id=created["id"]), gpu_seconds=2.0)
    body = api.get(f"/api/v1/mockups/{created['id']}").json()
    assert [(v["seed"], v["fidelity_max_delta"], v["gpu_seconds"]) for v in body["variations"]] == [
        (40, 0, 2.0),
        (41, 0, 2.0),
    ]
    assert body["gpu_seconds"] == 4.0
    assert body["gpu_hourly_price"] == 3.60
    assert body["cost_per_image"] == pytest.approx(0.002)
    assert body["cutout_method"] == "grabcut" and body["cutout_confidence"] == pytest.approx(0.93)


def test_a_job_is_canceled_through_the_api(api):
    created = api.post(
        "/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}
    ).json()
    response = api.post(f"/api/v1/mockups/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert api.post(f"/api/v1/mockups/{created['id']}/cancel").json()["status"] == "canceled"


def test_a_finished_variation_is_regenerated_with_a_new_seed(api):
    created = api.post(
        "/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"], "count": 2}
    ).json()
    job_run_through_services(Job.objects.get(public_id=created["id"]))
    response = api.post(f"/api/v1/mockups/{created['id']}/variations/1/regenerate", {"seed": 321})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["variations"][1]["seed"] == 321 and body["variations"][1]["status"] == "queued"
    assert body["variations"][0]["status"] == "succeeded"


def test_regenerating_without_a_body_picks_a_random_seed(api):
    created = api.post(
        "/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}
    ).json()
    job_run_through_services(Job.objects.get(public_id=created["id"]))
    response = api.client.post(
        f"/api/v1/mockups/{created['id']}/variations/0/regenerate", HTTP_AUTHORIZATION=f"Bearer {api.key}"
    )
    assert response.status_code == 202, response.content


def test_regenerating_a_running_job_or_a_missing_variation_is_refused(api):
    created = api.post(
        "/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}
    ).json()
    assert api.post(f"/api/v1/mockups/{created['id']}/variations/0/regenerate").status_code == 422
    job_run_through_services(Job.objects.get(public_id=created["id"]))
    assert api.post(f"/api/v1/mockups/{created['id']}/variations/4/regenerate").status_code == 404


def test_the_list_is_newest_first_and_pages_with_cursors(api):
    ids = [
        api.post("/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}).json()[
            "id"
        ]
        for _ in range(5)
    ]
    newest_first = list(reversed(ids))
    first = api.get("/api/v1/mockups?limit=2").json()
    assert [j["id"] for j in first["results"]] == newest_first[:2]
    assert first["previous"] is None
    second = api.get(first["next"].removeprefix("http://testserver")).json()
    assert [j["id"] for j in second["results"]] == newest_first[2:4]
    third = api.get(second["next"].removeprefix("http://testserver")).json()
    assert [j["id"] for j in third["results"]] == newest_first[4:]
    assert third["next"] is None
    back = api.get(third["previous"].removeprefix("http://testserver")).json()
    assert [j["id"] for j in back["results"]] == newest_first[2:4]


def test_a_forged_cursor_is_a_422_on_cursor(api):
    response = api.get("/api/v1/mockups?cursor=not-a-cursor")
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["cursor"]


def test_styles_are_listed_in_the_operators_order_with_their_defaults(api, world):
    styles = api.get("/api/v1/styles").json()
    expected = list(style_list_for_merchant(merchant=world.acme.merchant).values_list("slug", flat=True))
    assert [s["slug"] for s in styles] == expected
    assert set(STYLES) <= set(expected)
    assert all(s["defaults"]["steps"] >= 0 and s["version"] >= 1 for s in styles)


def test_health_reports_every_part(api):
    health = api.get("/api/v1/health").json()
    assert health["status"] == "ok"
    assert health["database"]["ok"] and health["broker"]["ok"]
    assert health["broker"]["kind"] == "embedded"
    assert set(health["queues"]) == {"cpu", "gpu", "webhooks"}
    assert isinstance(health["gpu_workers"], list) and isinstance(health["models_resident"], list)


def test_the_request_origin_is_remembered_for_webhooks(api):
    created = api.post(
        "/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}
    ).json()
    context = JobApiContext.objects.get(job__public_id=created["id"])
    assert context.base_url == "http://testserver"


def test_the_openapi_schema_and_the_docs_are_served(api):
    schema = Client().get("/api/openapi.json").json()
    assert "/api/v1/mockups" in schema["paths"] and "/v1/predictions" in schema["paths"]
    assert Client().get("/api/docs").status_code == 200


def test_api_keys_never_appear_in_responses(api):
    body = api.post(
        "/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}
    ).content.decode()
    assert not re.search(re.escape(api.key), body)


def test_jobs_of_the_browser_ui_are_visible_too(api, world):
    job = make_job(merchant=world.acme.merchant, styles=[make_style()])
    assert api.get(f"/api/v1/mockups/{job.public_id}").status_code == 200


def test_an_api_client_is_answered_without_a_session(world):
    client = ApiClient(world.acme.key)
    client.client.logout()
    assert client.get("/api/v1/styles").status_code == 200


def test_a_photo_over_the_size_limit_is_413_whichever_way_it_comes(api, settings):
    settings.UPLOAD_MAX_BYTES = 4096
    big = photo_bytes(size=(400, 400), fmt="BMP")  # about 480 kB
    as_json = api.post("/api/v1/mockups", {"image": data_uri(big), "styles": ["forest-moss"]})
    as_file = api.post_multipart("/api/v1/mockups", {"image": upload(data=big), "styles": ["forest-moss"]})
    assert (as_json.status_code, as_file.status_code) == (413, 413)
    assert as_json.json()["code"] == as_file.json()["code"] == "image_file_too_large"
    assert not Job.objects.exists()


def test_a_corrupt_photo_is_a_422_on_image(api):
    truncated = photo_bytes()[:300]
    response = api.post("/api/v1/mockups", {"image": data_uri(truncated), "styles": ["forest-moss"]})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["image"]
