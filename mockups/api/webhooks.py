"""Webhooks: which job events become which webhook events, signing, the SSRF guard, and delivery.

Events (Replicate's names): ``start`` when the job starts running, ``output`` when a variation
finishes, ``logs`` on progress, ``completed`` when the job ends (succeeded, failed or canceled).
The body is the object the job's creator knows (a prediction, or a native mockup), built when it
is sent, so a late delivery always carries the latest state.

Signing follows Replicate (the Standard Webhooks / Svix scheme): headers ``webhook-id`` (the same
on every retry of one event), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature`` = ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the
base64-decoded part of the merchant's ``whsec_`` secret.

Intermediate events (``output``, ``logs``) go out at most once per ``WEBHOOK_THROTTLE_MS`` per job:
one that arrives too soon is folded into a single delayed send. ``start`` and ``completed`` are
never throttled; only ``completed`` is retried (with exponential backoff, by Dramatiq). Every
attempt is written to ``WebhookDelivery``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from mockups.accounts.models import Merchant
from mockups.api.models import WebhookDelivery
from mockups.api.problems import FieldsInvalid
from mockups.jobs.models import FINAL_JOB_STATUSES, Job, JobStatus

logger = logging.getLogger(__name__)

EVENT_START = "start"
EVENT_OUTPUT = "output"
EVENT_LOGS = "logs"
EVENT_COMPLETED = "completed"
INTERMEDIATE_EVENTS = frozenset({EVENT_OUTPUT, EVENT_LOGS})
USER_AGENT = "mockup-studio-webhooks/1"
_SECRET_FORMAT = re.compile(r"^whsec_[A-Za-z0-9+/]+={0,2}$")


class WebhookDeliveryFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached); the final event is retried."""


# -- signing ---------------------------------------------------------------------------------


def _secret_is_standard(secret: str) -> bool:
    if not _SECRET_FORMAT.match(secret):
        return False
    try:
        return len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    except binascii.Error:
        return False


def merchant_webhook_secret(*, merchant: Merchant) -> str:
    """The merchant's signing secret as ``whsec_<standard base64>``, the form Replicate's clients decode.

    A secret in any other form (such as URL-safe base64, whose ``_`` and ``-`` Replicate's
    ``Webhooks.validate`` cannot read) is replaced once by a standard one; the conditional update
    makes concurrent callers agree on a single new secret.
    """
    if _secret_is_standard(merchant.webhook_secret):
        return merchant.webhook_secret
    fresh = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    Merchant.objects.filter(pk=merchant.pk, webhook_secret=merchant.webhook_secret).update(
        webhook_secret=fresh
    )
    merchant.refresh_from_db(fields=["webhook_secret"])
    return merchant.webhook_secret


def webhook_signature(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 signature>`` over ``id.timestamp.body`` with the decoded ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


# -- the SSRF guard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookTarget:
    """A checked webhook URL and the addresses it resolved to (delivery connects to one of these)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def webhook_target_check(url: str, *, field: str = "webhook") -> WebhookTarget:
    """Parse and resolve a webhook URL; refuse what must not be called.

    Refused with a 422 naming ``field``: anything but http(s), a URL without a host, a host that
    does not resolve, and (unless ``WEBHOOK_ALLOW_PRIVATE_TARGETS``) any host with an address that
    is loopback, private, link-local, shared, reserved, multicast or unspecified.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise FieldsInvalid.one(field, "must be an http:// or https:// URL.", code="webhook_target_refused")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise FieldsInvalid.one(field, "has an invalid port.", code="webhook_target_refused") from exc
    if not host:
        raise FieldsInvalid.one(field, "must name a host.", code="webhook_target_refused")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FieldsInvalid.one(
            field, f"the host {host!r} does not resolve.", code="webhook_target_refused"
        ) from exc
    addresses = tuple(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        refused = [a for a in addresses if not _address_allowed(ipaddress.ip_address(a))]
        if refused:
            raise FieldsInvalid.one(
                field,
                f"the host {host!r} resolves to a private or reserved address ({refused[0]}); "
                "webhooks go to public addresses only.",
                code="webhook_target_refused",
            )
    return WebhookTarget(url=url.strip(), scheme=parts.scheme, host=host, port=port, addresses=addresses)


def _post_pinned(target: WebhookTarget, *, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to the address the guard checked, not to a fresh DNS answer (no DNS rebinding).

    The URL carries the IP; ``Host`` and (for https) the TLS server name and certificate check
    still use the host name. Redirects are not followed: they could point anywhere.
    """
    parts = urlsplit(target.url)
    address = target.addresses[0]
    literal = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((parts.scheme, f"{literal}:{target.port}", parts.path or "/", parts.query, ""))
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host:
        host_header = f"[{target.host}]" if target.port == default_port else f"[{target.host}]:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    with httpx.Client(timeout=settings.WEBHOOK_TIMEOUT_S, follow_redirects=False) as client:
        if parts.username:  # credentials in the URL become Basic auth, as a browser would send them
            return client.post(
                pinned,
                content=body,
                headers={**headers, "Host": host_header},
                auth=(parts.username, parts.password or ""),
                extensions=extensions,
            )
        return client.post(
            pinned, content=body, headers={**headers, "Host": host_header}, extensions=extensions
        )


# -- delivery ------------------------------------------------------------------------------------


def webhook_body(job: Job) -> bytes:
    from mockups.api.representations import job_representation_for_webhook

    return json.dumps(job_representation_for_webhook(job), cls=DjangoJSONEncoder).encode()


def webhook_deliver(*, job_id: str, event: str, webhook_id: str, attempt: int) -> WebhookDelivery | None:
    """Send one event of a job to its webhook URL, once, and log the attempt.

    Returns the logged attempt, or None when there is nothing to send (no such job, no webhook,
    or an intermediate event that the job's end has overtaken). Raises WebhookDeliveryFailed for
    a ``completed`` event the receiver did not accept (or could not be reached for), so that the
    queue retries it; a target the SSRF guard refuses is logged and not retried.
    """
    job = (
        Job.objects.select_related("merchant", "api_context")
        .prefetch_related("variations__style_version__style")
        .filter(public_id=job_id)
        .first()
    )
    if job is None or not job.webhook_url:
        return None
    if event in INTERMEDIATE_EVENTS and job.status in FINAL_JOB_STATUSES:
        return None  # the completed event carries everything; a late progress event would only confuse
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    retryable = True
    try:
        target = webhook_target_check(job.webhook_url)
        body = webhook_body(job)
        timestamp = int(time.time())
        secret = merchant_webhook_secret(merchant=job.merchant)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook_signature(
                secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body
            ),
        }
        response = _post_pinned(target, body=body, headers=headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"the receiver answered {status_code}: {response.text[:200]}"
    except FieldsInvalid as exc:
        error, retryable = f"refused: {exc.message}", False  # a policy decision: trying again changes nothing
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    delivery = WebhookDelivery.objects.create(
        job=job,
        merchant=job.merchant,
        event=event,
        webhook_id=webhook_id,
        url=job.webhook_url,
        attempt=attempt,
        status_code=status_code,
        error=error,
        duration_ms=round((time.monotonic() - started) * 1000, 2),
    )
    if error:
        logger.info(
            "webhook %s (%s, attempt %d) to %s failed: %s", webhook_id, event, attempt, job.webhook_url, error
        )
        if event == EVENT_COMPLETED and retryable:
            raise WebhookDeliveryFailed(error)
    return delivery


# -- from job events to webhook events -------------------------------------------------------------


def webhook_event_for(message: dict[str, Any]) -> str | None:
    """The webhook event a job event stands for, if any."""
    kind = message.get("type")
    if kind == "job.status":
        status = message.get("status")
        if status in FINAL_JOB_STATUSES:
            return EVENT_COMPLETED
        if status == JobStatus.PREPARING:
            return EVENT_START
        return None
    if kind == "variation.succeeded":
        return EVENT_OUTPUT
    if kind in ("variation.progress", "variation.failed", "job.cutout"):
        return EVENT_LOGS
    return None


class IntermediateThrottle:
    """At most one intermediate send per interval per job; one arriving too soon becomes a delayed send.

    ``admit`` answers the delay in milliseconds to send with (0: now), or None when a delayed send
    is already pending: that one is built when it goes out, so it carries this event's news too.
    Per process: a job's events come from the one worker that holds its lease.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def admit(self, key: str, *, interval_s: float, now: float | None = None) -> int | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is None or now >= last + interval_s:
                self._last[key] = now
                return 0
            if last > now:
                return None
            self._last[key] = last + interval_s
            return max(round((last + interval_s - now) * 1000), 1)

    def forget(self, key: str) -> None:
        with self._lock:
            self._last.pop(key, None)


_throttle = IntermediateThrottle()


def webhook_event_heard(job: Job, message: dict[str, Any]) -> None:
    """The job-event listener (registered at start-up): enqueue the webhook deliveries it calls for.

    Runs after the commit that produced the event, in whatever process produced it; it never
    raises, so a webhook problem can never fail a job.
    """
    try:
        if not job.webhook_url:
            return
        event = webhook_event_for(message)
        if event is None or event not in (job.webhook_events or []):
            return
        key = job.public_id.hex
        delay_ms = 0
        if event in INTERMEDIATE_EVENTS:
            admitted = _throttle.admit(key, interval_s=settings.WEBHOOK_THROTTLE_MS / 1000)
            if admitted is None:
                return
            delay_ms = admitted
        elif event == EVENT_COMPLETED:
            _throttle.forget(key)
        webhook_enqueue(job=job, event=event, seq=int(message.get("seq", 0)), delay_ms=delay_ms)
    except Exception:
        logger.exception("could not enqueue a webhook for job %s", getattr(job, "public_id", "?"))


def webhook_enqueue(*, job: Job, event: str, seq: int, delay_ms: int = 0) -> None:
    from mockups.api.tasks import webhook_send

    webhook_id = f"msg_{job.public_id.hex}_{seq}_{event}"
    options: dict[str, Any] = {"max_retries": 0}
    if event == EVENT_COMPLETED:
        options = {
            "max_retries": settings.WEBHOOK_MAX_ATTEMPTS - 1,
            "min_backoff": settings.WEBHOOK_RETRY_MIN_BACKOFF_MS,
            "max_backoff": settings.WEBHOOK_RETRY_MAX_BACKOFF_MS,
        }
    if delay_ms:
        options["delay"] = delay_ms
    webhook_send.send_with_options(args=(str(job.public_id), event, webhook_id), **options)
