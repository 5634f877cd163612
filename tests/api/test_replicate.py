"""The Replicate-compatible API, /v1/, driven by the published ``replicate`` client (through WSGI, in-process).

The live-server test (``test_replicate_live.py``) runs the same client against a real server over
TLS; these tests cover the rest of the surface quickly and deterministically, finishing jobs
through the workers' own services.
"""

from __future__ import annotations

import hashlib
import io

import dramatiq
import pytest
import replicate
from django.test import Client
from PIL import Image
from replicate.exceptions import ReplicateError
from replicate.helpers import FileOutput

from mockups.api.model_card import model_version_id
from mockups.api.replicate import cancel_after_seconds, prefer_wait_seconds
from mockups.api.tasks import prediction_deadline
from mockups.jobs.models import Job, JobSource
from tests.api.conftest import data_uri, job_run_through_services, photo_bytes, replicate_client

pytestmark = pytest.mark.django_db

MODEL = "mockups/product-mockup"


@pytest.fixture
def client(world, in_process_wsgi) -> replicate.Client:
    return replicate_client(world.acme.key, in_process_wsgi)


def job_of(prediction) -> Job:
    return Job.objects.get(public_id=prediction.id)


def test_a_prediction_with_a_file_input_uploads_the_file_first_and_starts(client):
    prediction = client.models.predictions.create(
        model=MODEL, input={"image": io.BytesIO(photo_bytes()), "styles": ["forest-moss"], "num_outputs": 2}
    )
    assert prediction.status == "starting"
    assert prediction.model == MODEL and prediction.version == model_version_id()
    assert len(prediction.id) == 32
    assert prediction.urls["get"] == f"https://testserver/v1/predictions/{prediction.id}"
    assert prediction.input["image"].startswith("https://testserver/v1/files/")
    job = job_of(prediction)
    assert job.source == JobSource.REPLICATE
    assert [v.style_version.style.slug for v in job.variations.all()] == ["forest-moss", "forest-moss"]
    assert [f.id for f in client.files.list()] == [prediction.input["image"].rsplit("/", 1)[-1]]


def test_predictions_by_version_and_by_deployment_are_the_same_model(client):
    by_version = client.predictions.create(
        version=model_version_id(), input={"image": data_uri(photo_bytes())}
    )
    by_ref = client.predictions.create(
        version=f"{MODEL}:{model_version_id()}", input={"image": data_uri(photo_bytes())}
    )
    by_deployment = client.deployments.predictions.create(
        deployment=MODEL, input={"image": data_uri(photo_bytes())}
    )
    assert {p.status for p in (by_version, by_ref, by_deployment)} == {"starting"}
    assert len(job_of(by_version).variations.all()) == 5


def test_an_unknown_version_or_model_is_refused(client):
    with pytest.raises(ReplicateError) as unknown_version:
        client.predictions.create(version="0" * 64, input={"image": data_uri(photo_bytes())})
    assert unknown_version.value.status == 422
    with pytest.raises(ReplicateError) as unknown_model:
        client.models.predictions.create(model="stability-ai/sdxl", input={"image": data_uri(photo_bytes())})
    assert unknown_model.value.status == 404
    assert "mockups/product-mockup" in (unknown_model.value.detail or "")


def test_bad_inputs_are_422_naming_the_input_fields(client):
    with pytest.raises(ReplicateError) as error:
        client.models.predictions.create(
            model=MODEL, input={"image": data_uri(photo_bytes()), "steps": 0, "seed": -1}
        )
    assert error.value.status == 422
    problem = (
        Client()
        .post(
            f"/v1/models/{MODEL}/predictions",
            {"input": {"image": data_uri(photo_bytes()), "steps": 0, "num_outputs": 9}},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {client._api_token}",
        )
        .json()
    )
    assert {e["field"] for e in problem["errors"]} == {"input.steps", "input.num_outputs"}


def test_several_styles_with_a_different_num_outputs_are_refused(client):
    with pytest.raises(ReplicateError) as error:
        client.models.predictions.create(
            model=MODEL,
            input={
                "image": data_uri(photo_bytes()),
                "styles": "forest-moss, concrete-loft",
                "num_outputs": 3,
            },
        )
    assert error.value.status == 422


def test_styles_may_be_one_string_with_commas(client):
    prediction = client.models.predictions.create(
        model=MODEL, input={"image": data_uri(photo_bytes()), "styles": "forest-moss, concrete-loft"}
    )
    assert [v.style_version.style.slug for v in job_of(prediction).variations.all()] == [
        "forest-moss",
        "concrete-loft",
    ]


def test_a_finished_prediction_has_its_outputs_as_files_metrics_and_logs(client):
    prediction = client.models.predictions.create(
        model=MODEL, input={"image": data_uri(photo_bytes()), "styles": ["forest-moss"], "num_outputs": 3}
    )
    job_run_through_services(job_of(prediction), gpu_seconds=1.25)
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.completed_at and prediction.started_at
    assert prediction.metrics["predict_time"] >= 0 and prediction.metrics["gpu_seconds"] == 3.75
    assert prediction.progress is not None and prediction.progress.percentage == 1.0
    outputs = replicate.helpers.transform_output(prediction.output, client)
    assert len(outputs) == 3 and all(isinstance(o, FileOutput) for o in outputs)
    for output in outputs:
        Image.open(io.BytesIO(output.read())).verify()


def test_a_failed_prediction_carries_the_error(client):
    prediction = client.models.predictions.create(
        model=MODEL, input={"image": data_uri(photo_bytes()), "styles": ["forest-moss"], "num_outputs": 2}
    )
    job_run_through_services(job_of(prediction), fail_index=1)
    prediction.reload()
    assert prediction.status == "failed" and prediction.error
    assert len(prediction.output) == 1
    assert "GPU ran out of memory" in prediction.logs


def test_progress_is_in_the_logs_as_tqdm_lines(client):
    prediction = client.models.predictions.create(
        model=MODEL, input={"image": data_uri(photo_bytes()), "styles": ["forest-moss"], "num_outputs": 2}
    )
    job = job_of(prediction)
    job.variations.filter(index=0).update(status="generating", step=12, steps=30)
    job.variations.filter(index=1).update(status="generating", step=6, steps=30)
    Job.objects.filter(pk=job.pk).update(status="generating")
    prediction.reload()
    assert prediction.status == "processing"
    assert " 40%|████      | 12/30" in prediction.logs
    assert prediction.progress is not None
    assert (prediction.progress.current, prediction.progress.total) == (18, 60)


def test_a_prediction_is_canceled(client):
    prediction = client.models.predictions.create(model=MODEL, input={"image": data_uri(photo_bytes())})
    prediction.cancel()
    assert prediction.status == "canceled"
    assert client.predictions.get(prediction.id).status == "canceled"


def test_predictions_are_listed_newest_first_across_pages(client, settings):
    settings.API_PAGE_SIZE = 2
    ids = [
        client.models.predictions.create(model=MODEL, input={"image": data_uri(photo_bytes())}).id
        for _ in range(3)
    ]
    first = client.predictions.list()
    assert [p.id for p in first] == ids[::-1][:2]
    second = client.predictions.list(first.next)
    assert [p.id for p in second] == ids[::-1][2:]
    assert second.next is None and second.previous is not None


def test_a_wait_that_runs_out_answers_starting_so_clients_keep_polling(client):
    prediction = client.models.predictions.create(
        model=MODEL, input={"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}, wait=1
    )
    assert prediction.status == "starting"


def test_a_wait_on_a_finished_prediction_answers_with_its_final_state(client, world):
    api = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {world.acme.key}", "HTTP_IDEMPOTENCY_KEY": "run-1"}
    body = {"input": {"image": data_uri(photo_bytes()), "styles": ["forest-moss"]}}
    created = api.post(
        f"/v1/models/{MODEL}/predictions", body, content_type="application/json", **headers
    ).json()
    job_run_through_services(Job.objects.get(public_id=created["id"]))
    again = api.post(
        f"/v1/models/{MODEL}/predictions",
        body,
        content_type="application/json",
        HTTP_PREFER="wait=5",
        **headers,
    )
    assert again.status_code == 201
    assert again.json()["id"] == created["id"] and again.json()["status"] == "succeeded"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("wait", 60), ("wait=5", 5), ("respond-async, wait=60", 60), ("return=minimal", None)],
)
def test_prefer_wait_is_read_like_replicate(header, seconds):
    assert prefer_wait_seconds(header) == seconds


@pytest.mark.parametrize("header", ["wait=0", "wait=61", "wait=soon"])
def test_a_prefer_wait_out_of_range_is_a_422(header, client):
    response = Client().post(
        f"/v1/models/{MODEL}/predictions",
        {"input": {"image": data_uri(photo_bytes())}},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {client._api_token}",
        HTTP_PREFER=header,
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["Prefer"]


@pytest.mark.parametrize(("header", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("45", 45)])
def test_cancel_after_durations(header, seconds):
    assert cancel_after_seconds(header) == seconds


def test_cancel_after_schedules_the_cancellation_of_an_unfinished_prediction(
    world, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(
            f"/v1/models/{MODEL}/predictions",
            {"input": {"image": data_uri(photo_bytes())}},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {world.acme.key}",
            HTTP_CANCEL_AFTER="30s",
        )
    assert response.status_code == 201
    delayed = [dramatiq.Message.decode(raw) for raw in list(stub_broker.queues["cpu.DQ"].queue)]
    deadlines = [m for m in delayed if m.actor_name == "prediction_deadline"]
    assert len(deadlines) == 1
    assert deadlines[0].options["eta"] - deadlines[0].message_timestamp == pytest.approx(30_000, abs=1000)
    prediction_deadline.fn(*deadlines[0].args)  # what the worker runs when the delay is over
    assert Job.objects.get(public_id=response.json()["id"]).status == "canceled"


def test_a_too_short_cancel_after_is_a_422(world):
    response = Client().post(
        f"/v1/models/{MODEL}/predictions",
        {"input": {"image": data_uri(photo_bytes())}},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.acme.key}",
        HTTP_CANCEL_AFTER="2s",
    )
    assert response.status_code == 422


def test_files_are_uploaded_listed_read_and_deleted(client):
    data = photo_bytes(fmt="JPEG")
    uploaded = client.files.create(io.BytesIO(data), filename="mug.jpg", metadata={"sku": "MUG-1"})
    assert uploaded.content_type == "image/jpeg" and uploaded.size == len(data)
    assert uploaded.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    assert uploaded.metadata == {"sku": "MUG-1"} and uploaded.name == "mug.jpg"
    assert client.files.get(uploaded.id).id == uploaded.id
    assert [f.id for f in client.files.list()] == [uploaded.id]
    download = client._client.get(f"/v1/files/{uploaded.id}/download")
    assert download.status_code == 200 and download.content == data
    assert client.files.delete(uploaded.id) is True
    assert client.files.list() == []
    with pytest.raises(ReplicateError) as gone:
        client.files.get(uploaded.id)
    assert gone.value.status == 404


def test_a_file_that_is_not_a_photo_is_refused_at_upload(client):
    with pytest.raises(ReplicateError) as error:
        client.files.create(io.BytesIO(b"%PDF-1.7 not a photo"), filename="spec.pdf")
    assert error.value.status == 415


def test_the_model_and_its_version_describe_the_inputs_and_output(client):
    model = client.models.get(MODEL)
    assert (model.owner, model.name) == ("mockups", "product-mockup")
    version = model.latest_version
    assert version is not None and version.id == model_version_id()
    inputs = version.openapi_schema["components"]["schemas"]["Input"]["properties"]
    assert {
        "image",
        "styles",
        "num_outputs",
        "seed",
        "steps",
        "guidance",
        "negative_prompt",
        "output_preset",
        "output_format",
    } <= set(inputs)
    assert inputs["num_outputs"]["maximum"] == 5
    assert version.openapi_schema["components"]["schemas"]["Output"]["type"] == "array"
    assert [v.id for v in model.versions.list()] == [version.id]
    assert model.versions.get(version.id).id == version.id


def test_the_webhook_secret_is_one_replicate_clients_can_use(client, world):
    secret = client.webhooks.default.secret()
    assert secret.key.startswith("whsec_") and len(secret.key.split("_")) == 2
    world.acme.merchant.refresh_from_db()
    assert world.acme.merchant.webhook_secret == secret.key
    assert client.webhooks.default.secret().key == secret.key


def test_the_account_is_the_keys_merchant(client, world):
    account = client.accounts.current()
    assert account.name == world.acme.merchant.name and account.username == "acme-mugs"


def test_a_corrupt_photo_is_a_422_on_input_image(world):
    response = Client().post(
        f"/v1/models/{MODEL}/predictions",
        {"input": {"image": data_uri(photo_bytes()[:300])}},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.acme.key}",
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["input.image"]
