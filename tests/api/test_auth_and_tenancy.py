"""Keys and tenants: no key or a revoked one is 401 everywhere; another merchant's ids are 404 everywhere."""

from __future__ import annotations

import re
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from mockups.api.api import api as ninja_api
from mockups.jobs.models import Job
from tests.api.conftest import ApiClient, data_uri, job_run_through_services, photo_bytes

pytestmark = pytest.mark.django_db


def every_operation() -> list[tuple[str, str]]:
    """(method, path) of every operation in the OpenAPI schema, path parameters filled with made-up ids."""
    schema = ninja_api.get_openapi_schema(path_prefix="")
    operations = []
    for path, methods in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", lambda m: "1" if m.group(0) == "{index}" else uuid.uuid4().hex, path)
        concrete = concrete.replace("/models/1/1", "/models/mockups/product-mockup")
        for method in methods:
            operations.append((method.upper(), concrete))
    return operations


OPERATIONS = every_operation()


def call(method: str, path: str, **headers: str):
    client = Client()
    if method == "GET":
        return client.get(path, **headers)
    if method == "DELETE":
        return client.delete(path, **headers)
    return client.post(path, "{}", content_type="application/json", **headers)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_needs_a_key(world, method, path):
    response = call(method, path)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer ms_nope_nope",
        "Bearer ms_0123456789_wrongsecretwrongsecretwrongsecret",
    ],
)
def test_a_malformed_or_unknown_key_is_401(world, header):
    assert Client().get("/v1/predictions", HTTP_AUTHORIZATION=header).status_code == 401


def test_a_key_is_accepted_as_bearer_or_token(world):
    for scheme in ("Bearer", "bearer", "Token"):
        response = Client().get("/v1/predictions", HTTP_AUTHORIZATION=f"{scheme} {world.acme.key}")
        assert response.status_code == 200, scheme


def test_a_revoked_key_is_401(world):
    key = world.acme.merchant.api_keys.get(name="storefront")
    key.revoked_at = timezone.now()
    key.save()
    assert Client().get("/api/v1/mockups", HTTP_AUTHORIZATION=f"Bearer {world.acme.key}").status_code == 401


def test_the_key_of_a_deactivated_merchant_is_401(world):
    world.bolt.merchant.is_active = False
    world.bolt.merchant.save()
    assert Client().get("/api/v1/styles", HTTP_AUTHORIZATION=f"Bearer {world.bolt.key}").status_code == 401


def test_the_docs_and_the_schema_need_no_key():
    assert Client().get("/api/openapi.json").status_code == 200
    assert Client().get("/api/docs").status_code == 200


# -- tenancy -----------------------------------------------------------------------------------


@pytest.fixture
def acme_things(world):
    """A finished job, a queued job and an uploaded file of Acme's, made through the API."""
    acme = ApiClient(world.acme.key)
    done = acme.post("/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}).json()
    job_run_through_services(Job.objects.get(public_id=done["id"]))
    queued = acme.post(
        "/v1/models/mockups/product-mockup/predictions", {"input": {"image": data_uri(photo_bytes())}}
    ).json()
    upload = acme.client.post(
        "/v1/files",
        {"content": SimpleUploadedFile("mug.png", photo_bytes())},
        HTTP_AUTHORIZATION=f"Bearer {world.acme.key}",
    ).json()
    return {
        "done": done["id"],
        "queued": queued["id"],
        "file": upload["id"],
        "file_url": upload["urls"]["get"],
    }


def test_another_merchants_ids_are_404_through_every_door(world, acme_things):
    done, queued, file_id = acme_things["done"], acme_things["queued"], acme_things["file"]
    hex_done = uuid.UUID(done).hex
    requests = [
        ("GET", f"/api/v1/mockups/{done}"),
        ("POST", f"/api/v1/mockups/{queued}/cancel"),
        ("POST", f"/api/v1/mockups/{done}/variations/0/regenerate"),
        ("GET", f"/v1/predictions/{hex_done}"),
        ("GET", f"/v1/predictions/{done}"),
        ("POST", f"/v1/predictions/{queued}/cancel"),
        ("GET", f"/v1/files/{file_id}"),
        ("GET", f"/v1/files/{file_id}/download"),
        ("DELETE", f"/v1/files/{file_id}"),
    ]
    for shop in (world.bolt, world.cobalt):
        for method, path in requests:
            response = call(method, path, HTTP_AUTHORIZATION=f"Bearer {shop.key}")
            assert response.status_code == 404, (shop.merchant.name, method, path)
            assert response.json()["code"] == "not_found"
    acme = ApiClient(world.acme.key)
    assert acme.get(f"/api/v1/mockups/{queued}").json()["status"] == "queued"  # nobody canceled it
    assert acme.get(f"/v1/files/{file_id}").status_code == 200  # nobody deleted it
    assert acme.get(f"/api/v1/mockups/{done}").json()["variations"][0]["status"] == "succeeded"


def test_missing_and_malformed_ids_look_the_same_as_anothers(world):
    acme = ApiClient(world.acme.key)
    for path in (
        "/api/v1/mockups/not-a-uuid",
        f"/api/v1/mockups/{uuid.uuid4()}",
        f"/v1/predictions/{uuid.uuid4().hex}",
    ):
        response = acme.get(path)
        assert response.status_code == 404
        assert response.json()["detail"] == "No such mockup job."


def test_lists_show_only_the_merchants_own_things(world, acme_things):
    for shop in (world.bolt, world.cobalt):
        client = ApiClient(shop.key)
        assert client.get("/api/v1/mockups").json()["results"] == []
        assert client.get("/v1/predictions").json()["results"] == []
        assert client.get("/v1/files").json()["results"] == []
    acme = ApiClient(world.acme.key)
    assert len(acme.get("/api/v1/mockups").json()["results"]) == 2
    assert len(acme.get("/v1/predictions").json()["results"]) == 2


def test_another_merchants_uploaded_file_cannot_be_used_as_an_input(world, acme_things):
    bolt = ApiClient(world.bolt.key)
    for path, body in (
        ("/api/v1/mockups", {"image": acme_things["file_url"]}),
        ("/v1/models/mockups/product-mockup/predictions", {"input": {"image": acme_things["file_url"]}}),
    ):
        response = bolt.post(path, body)
        assert response.status_code == 422, path
        assert response.json()["errors"][0]["field"] in {"image", "input.image"}
    assert not Job.objects.filter(merchant=world.bolt.merchant).exists()


def test_each_merchant_has_its_own_webhook_secret(world):
    secrets = {ApiClient(shop.key).get("/v1/webhooks/default/secret").json()["key"] for shop in world.shops}
    assert len(secrets) == 3


def test_a_style_restricted_to_another_merchant_is_unknown(world):
    from tests.factories import make_style

    private = make_style(slug="bolt-only")
    private.restricted_to.add(world.bolt.merchant)
    acme = ApiClient(world.acme.key)
    assert "bolt-only" not in [s["slug"] for s in acme.get("/api/v1/styles").json()]
    response = acme.post("/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["bolt-only"]})
    assert response.status_code == 422 and response.json()["code"] == "unknown_style"
    bolt = ApiClient(world.bolt.key)
    assert (
        bolt.post("/api/v1/mockups", {"image": data_uri(photo_bytes()), "styles": ["bolt-only"]}).status_code
        == 201
    )


def test_the_idempotency_key_is_per_merchant(world):
    body = {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}
    ids = {
        ApiClient(shop.key).post("/api/v1/mockups", body, headers={"Idempotency-Key": "same"}).json()["id"]
        for shop in world.shops
    }
    assert len(ids) == 3
