"""Webhook deliveries in the admin: a read-only log, and a redeliver action that really sends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from mockups.api.models import WebhookDelivery
from tests.factories import make_job, make_style

pytestmark = pytest.mark.django_db


class Receiver:
    """A storefront's webhook endpoint on 127.0.0.1 answering ``status`` and keeping what it got."""

    def __init__(self) -> None:
        self.status = 204
        self.received: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                receiver.received.append({"webhook-id": self.headers.get("webhook-id", ""), "body": body})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mockups"


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # the receiver is on this machine
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def failed_delivery(tenants, url: str) -> WebhookDelivery:
    job = make_job(
        merchant=tenants.merchant,
        styles=[make_style()],
        status="succeeded",
        webhook_url=url,
        webhook_events=["completed"],
    )
    return WebhookDelivery.objects.create(
        job=job,
        merchant=tenants.merchant,
        event="completed",
        webhook_id=f"msg_{job.public_id.hex}_9_completed",
        url=url,
        attempt=3,
        status_code=502,
        error="the receiver answered 502: Bad Gateway",
    )


def test_redelivering_sends_the_event_again_with_the_same_webhook_id(admin_client, tenants, receiver):
    delivery = failed_delivery(tenants, receiver.url)
    response = admin_client.post(
        reverse("admin:api_webhookdelivery_changelist"),
        {"action": "redeliver", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "delivered, the receiver answered 204" in response.content.decode()
    assert [hit["webhook-id"] for hit in receiver.received] == [delivery.webhook_id]
    assert str(delivery.job.public_id) in receiver.received[0]["body"]
    latest = WebhookDelivery.objects.order_by("-id").first()
    assert (latest.attempt, latest.status_code, latest.webhook_id) == (4, 204, delivery.webhook_id)


def test_a_redelivery_the_receiver_refuses_is_reported_and_logged(admin_client, tenants, receiver):
    receiver.status = 500
    delivery = failed_delivery(tenants, receiver.url)
    response = admin_client.post(
        reverse("admin:api_webhookdelivery_changelist"),
        {"action": "redeliver", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "not delivered (the receiver answered 500" in response.content.decode()
    assert WebhookDelivery.objects.filter(webhook_id=delivery.webhook_id, attempt=4, status_code=500).exists()


def test_deliveries_are_read_only_and_can_be_found_by_job(admin_client, tenants):
    delivery = failed_delivery(tenants, "https://shop.example/hooks")
    page = admin_client.get(reverse("admin:api_webhookdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    found = admin_client.get(
        reverse("admin:api_webhookdelivery_changelist"), {"q": str(delivery.job.public_id)}
    )
    assert list(found.context["cl"].result_list) == [delivery]
    failed = admin_client.get(reverse("admin:api_webhookdelivery_changelist"), {"outcome": "failed"})
    assert list(failed.context["cl"].result_list) == [delivery]
