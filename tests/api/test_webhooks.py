"""Webhooks: signed like Replicate's, filtered by event, throttled, the final one retried, every attempt logged.

The receiver is a real HTTP server on 127.0.0.1 (so these tests turn WEBHOOK_ALLOW_PRIVATE_TARGETS
on); signatures are checked by an implementation written here from the scheme's description,
and by the Replicate client's own ``Webhooks.validate``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import dramatiq
import pytest
from django.test import Client
from replicate.webhook import InvalidSignatureError, Webhooks, WebhookSigningSecret

from mockups.api.models import WebhookDelivery
from mockups.api.webhooks import (
    IntermediateThrottle,
    merchant_webhook_secret,
    webhook_deliver,
    webhook_event_for,
    webhook_target_check,
)
from mockups.jobs.models import Job
from mockups.jobs.services import job_finish
from tests.api.conftest import (
    data_uri,
    job_generate_through_services,
    job_prepare_through_services,
    job_run_through_services,
    photo_bytes,
)
from tests.factories import make_style

MODEL_PREDICTIONS = "/v1/models/mockups/product-mockup/predictions"


@pytest.fixture
def private_targets_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_RETRY_MIN_BACKOFF_MS = 20
    settings.WEBHOOK_RETRY_MAX_BACKOFF_MS = 100
    return settings


def independent_signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks check, written from its description: HMAC-SHA256 over "id.timestamp.body"."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = headers["webhook-id"].encode() + b"." + headers["webhook-timestamp"].encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [
        part.split(",", 1)[1] for part in headers["webhook-signature"].split() if part.startswith("v1,")
    ]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


def create_prediction(world, *, style: str = "forest-moss", **body) -> dict:
    response = Client().post(
        MODEL_PREDICTIONS,
        {"input": {"image": data_uri(photo_bytes()), "styles": [style], "num_outputs": 2}, **body},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.acme.key}",
    )
    assert response.status_code == 201, response.content
    return response.json()


def deliver_queued(broker) -> list[str]:
    """Deliver the webhook messages waiting (not delayed ones) in this thread, first attempts only.

    Answers the events actually sent (a progress event that the job's end overtook is not).
    """
    sent = []
    queue = broker.queues["webhooks"]
    while not queue.empty():
        message = dramatiq.Message.decode(queue.get_nowait())
        job_id, event, webhook_id = message.args
        if webhook_deliver(job_id=job_id, event=event, webhook_id=webhook_id, attempt=1) is not None:
            sent.append(event)
    return sent


# -- signing and filtering (delivered in the test's thread) -----------------------------------------


@pytest.mark.django_db
def test_every_webhook_is_signed_with_the_merchants_secret(
    world, receiver, private_targets_allowed, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = create_prediction(world, webhook=receiver.url)
        job_run_through_services(Job.objects.get(public_id=created["id"]))
    assert deliver_queued(stub_broker) == ["start", "completed"]  # the cutout's "logs" came too late

    secret = merchant_webhook_secret(merchant=world.acme.merchant)
    assert len(receiver.received) == 2
    for request in receiver.received:
        assert request.path == "/hooks/mockups"
        assert independent_signature_ok(secret, request.headers, request.body)
        Webhooks.validate(  # raises unless the signature is right
            headers=request.headers,
            body=request.body.decode(),
            secret=WebhookSigningSecret(key=secret),
            tolerance=300,
        )
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 300
    final = receiver.received[-1]
    assert final.json()["id"] == created["id"] and final.json()["status"] == "succeeded"
    assert len(final.json()["output"]) == 2
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 2


@pytest.mark.django_db
def test_a_changed_body_or_another_secret_fails_verification(
    world, receiver, private_targets_allowed, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = create_prediction(world, webhook=receiver.url, webhook_events_filter=["completed"])
        job_run_through_services(Job.objects.get(public_id=created["id"]))
    deliver_queued(stub_broker)
    request = receiver.received[0]
    secret = merchant_webhook_secret(merchant=world.acme.merchant)
    tampered = request.body.replace(b"succeeded", b"failed")
    assert not independent_signature_ok(secret, request.headers, tampered)
    other = merchant_webhook_secret(merchant=world.bolt.merchant)
    assert not independent_signature_ok(other, request.headers, request.body)
    with pytest.raises(InvalidSignatureError):
        Webhooks.validate(
            headers=request.headers, body=tampered.decode(), secret=WebhookSigningSecret(key=secret)
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("events_filter", "expected"),
    [
        (None, ["start", "logs", "output", "output", "completed"]),
        (["completed"], ["completed"]),
        (["start", "completed"], ["start", "completed"]),
        (["output"], ["output", "output"]),
        (["logs"], ["logs"]),
    ],
)
def test_only_the_events_asked_for_are_sent(
    world,
    receiver,
    private_targets_allowed,
    stub_broker,
    django_capture_on_commit_callbacks,
    events_filter,
    expected,
):
    private_targets_allowed.WEBHOOK_THROTTLE_MS = 0  # every event on its own, whatever the timing
    filter_body = {"webhook_events_filter": events_filter} if events_filter is not None else {}
    sent = []
    with django_capture_on_commit_callbacks(execute=True):
        created = create_prediction(world, webhook=receiver.url, **filter_body)
        job = Job.objects.get(public_id=created["id"])
        job_prepare_through_services(job)  # start, then logs (the cutout)
    sent += deliver_queued(stub_broker)
    with django_capture_on_commit_callbacks(execute=True):
        claim = job_generate_through_services(job)  # one output per variation
    sent += deliver_queued(stub_broker)
    with django_capture_on_commit_callbacks(execute=True):
        job_finish(claim=claim)  # completed
    sent += deliver_queued(stub_broker)
    assert sent == expected
    assert [d.event for d in WebhookDelivery.objects.order_by("id")] == expected
    assert len(receiver.received) == len(expected)
    outputs = [r.json()["output"] for r in receiver.received if r.json()["status"] == "processing"]
    assert all(isinstance(o, list) for o in outputs)


@pytest.mark.django_db
def test_webhook_completed_alone_sends_only_the_final_event(
    world, receiver, private_targets_allowed, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = create_prediction(world, webhook_completed=receiver.url)
        job_run_through_services(Job.objects.get(public_id=created["id"]))
    assert deliver_queued(stub_broker) == ["completed"]


@pytest.mark.django_db
def test_a_native_job_sends_the_native_mockup_object(
    world, receiver, private_targets_allowed, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(
            "/api/v1/mockups",
            {
                "image": data_uri(photo_bytes()),
                "styles": ["forest-moss"],
                "webhook_url": receiver.url,
                "webhook_events": ["completed"],
            },
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {world.acme.key}",
        )
        assert response.status_code == 201, response.content
        job_run_through_services(Job.objects.get(public_id=response.json()["id"]))
    deliver_queued(stub_broker)
    body = receiver.received[0].json()
    assert body["id"] == response.json()["id"] and body["status"] == "succeeded"
    assert body["variations"][0]["image"].startswith("http://testserver/media/s/")


@pytest.mark.django_db
def test_a_canceled_prediction_sends_its_completed_event(
    world, receiver, private_targets_allowed, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = create_prediction(world, webhook=receiver.url)
        Client().post(
            f"/v1/predictions/{created['id']}/cancel", HTTP_AUTHORIZATION=f"Bearer {world.acme.key}"
        )
    assert deliver_queued(stub_broker) == ["completed"]
    assert receiver.received[0].json()["status"] == "canceled"


# -- throttling -----------------------------------------------------------------------------------


def test_intermediate_events_are_throttled_to_one_per_interval_with_a_trailing_send():
    throttle = IntermediateThrottle()
    assert throttle.admit("job", interval_s=0.5, now=10.0) == 0  # the first goes at once
    assert throttle.admit("job", interval_s=0.5, now=10.1) == 400  # the next waits for the window's end
    assert throttle.admit("job", interval_s=0.5, now=10.2) is None  # folded into that pending send
    assert throttle.admit("job", interval_s=0.5, now=10.45) is None
    assert throttle.admit("job", interval_s=0.5, now=10.7) == 300  # after the pending one (at 10.5)
    assert throttle.admit("job", interval_s=0.5, now=11.3) == 200  # the window after the send at 11.0
    assert throttle.admit("job", interval_s=0.5, now=12.6) == 0
    assert throttle.admit("other", interval_s=0.5, now=11.3) == 0  # per job
    throttle.forget("job")
    assert throttle.admit("job", interval_s=0.5, now=11.4) == 0


@pytest.mark.parametrize(
    ("message", "event"),
    [
        ({"type": "job.status", "status": "preparing"}, "start"),
        ({"type": "job.status", "status": "queued"}, None),
        ({"type": "job.status", "status": "generating"}, None),
        ({"type": "job.status", "status": "succeeded"}, "completed"),
        ({"type": "job.status", "status": "failed"}, "completed"),
        ({"type": "job.status", "status": "canceled"}, "completed"),
        ({"type": "job.cutout"}, "logs"),
        ({"type": "variation.progress"}, "logs"),
        ({"type": "variation.failed"}, "logs"),
        ({"type": "variation.succeeded"}, "output"),
    ],
)
def test_job_events_map_to_replicates_webhook_events(message, event):
    assert webhook_event_for(message) == event


# -- retries, with a real Dramatiq worker ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_final_event_is_retried_with_backoff_until_the_receiver_accepts_it(
    world, receiver, private_targets_allowed, stub_broker
):
    receiver.statuses = [500, 503]
    style = make_style()  # a transactional test starts without the default styles
    created = create_prediction(
        world, style=style.slug, webhook=receiver.url, webhook_events_filter=["completed"]
    )
    job_run_through_services(Job.objects.get(public_id=created["id"]))
    worker = dramatiq.Worker(stub_broker, queues={"webhooks"}, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        stub_broker.join("webhooks", timeout=30_000)
    finally:
        worker.stop()
    deliveries = list(WebhookDelivery.objects.order_by("id"))
    assert [(d.event, d.attempt, d.status_code) for d in deliveries] == [
        ("completed", 1, 500),
        ("completed", 2, 503),
        ("completed", 3, 200),
    ]
    assert "500" in deliveries[0].error and deliveries[2].error == ""
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # one event, retried
    assert all(d.duration_ms > 0 for d in deliveries)


@pytest.mark.django_db(transaction=True)
def test_retries_stop_after_the_configured_number_of_attempts(
    world, receiver, private_targets_allowed, stub_broker
):
    private_targets_allowed.WEBHOOK_MAX_ATTEMPTS = 3
    receiver.statuses = [500] * 10
    style = make_style()
    created = create_prediction(
        world, style=style.slug, webhook=receiver.url, webhook_events_filter=["completed"]
    )
    job_run_through_services(Job.objects.get(public_id=created["id"]))
    worker = dramatiq.Worker(stub_broker, queues={"webhooks"}, worker_threads=1, worker_timeout=20)
    worker.start()
    try:
        stub_broker.join("webhooks", timeout=30_000, fail_fast=False)
    finally:
        worker.stop()
    assert [d.attempt for d in WebhookDelivery.objects.order_by("id")] == [1, 2, 3]
    assert len(receiver.received) == 3


@pytest.mark.django_db
def test_an_unreachable_receiver_is_logged_with_the_error(
    world, private_targets_allowed, stub_broker, django_capture_on_commit_callbacks
):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with django_capture_on_commit_callbacks(execute=True):
        created = create_prediction(
            world, webhook=f"http://127.0.0.1:{port}/hook", webhook_events_filter=["start"]
        )
        job_run_through_services(Job.objects.get(public_id=created["id"]))
    deliver_queued(stub_broker)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status_code is None and "Connect" in delivery.error
    assert delivery.merchant == world.acme.merchant and delivery.url.endswith("/hook")


# -- the SSRF guard -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "ftp://example.com/hook",
        "http:///hook",
    ],
)
def test_webhooks_to_private_or_odd_targets_are_refused_naming_the_field(world, url):
    response = Client().post(
        MODEL_PREDICTIONS,
        {"input": {"image": data_uri(photo_bytes())}, "webhook": url},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.acme.key}",
    )
    assert response.status_code == 422, response.content
    problem = response.json()
    assert problem["code"] == "webhook_target_refused"
    assert [e["field"] for e in problem["errors"]] == ["webhook"]
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_native_api_names_its_own_webhook_field(world):
    response = Client().post(
        "/api/v1/mockups",
        {"image": data_uri(photo_bytes()), "webhook_url": "http://127.0.0.1/hook"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world.acme.key}",
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["webhook_url"]


def test_an_operator_may_allow_private_targets(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    target = webhook_target_check("http://127.0.0.1:9/hook")
    assert target.addresses == ("127.0.0.1",) and target.port == 9


@pytest.mark.django_db
def test_a_target_that_became_private_is_not_called_at_delivery(
    world, receiver, private_targets_allowed, stub_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        created = create_prediction(world, webhook=receiver.url, webhook_events_filter=["completed"])
        private_targets_allowed.WEBHOOK_ALLOW_PRIVATE_TARGETS = False  # e.g. the name now resolves elsewhere
        job_run_through_services(Job.objects.get(public_id=created["id"]))
    deliver_queued(stub_broker)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status_code is None and delivery.error.startswith("refused")
    assert receiver.received == []


# -- the secret -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_secret_replicate_clients_cannot_decode_is_replaced_once_by_one_they_can(world):
    merchant = world.acme.merchant
    merchant.webhook_secret = "whsec_abc-def_ghi"  # URL-safe base64: Replicate's validate() cannot read it
    merchant.save()
    secret = merchant_webhook_secret(merchant=merchant)
    assert secret != "whsec_abc-def_ghi" and len(base64.b64decode(secret[6:], validate=True)) == 32
    assert merchant_webhook_secret(merchant=merchant) == secret
