"""Fixtures for the API tests: three merchants with API keys, clients for both APIs, a StubBroker.

Every API test runs its actors on a fresh StubBroker, whatever the settings chose (with
REDIS_URL set they choose Redis): nothing an API test enqueues reaches a shared broker.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import replicate
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from dramatiq.brokers.stub import StubBroker
from PIL import Image, ImageDraw

from mockups.accounts.services import api_key_create
from mockups.jobs.models import Job
from mockups.jobs.services import (
    Claim,
    job_claim,
    job_finish,
    job_mark_prepared,
    variation_mark_failed,
    variation_mark_started,
    variation_mark_succeeded,
)
from tests.factories import make_merchant, png_bytes


@pytest.fixture(autouse=True)
def _every_api_test_on_a_stub_broker(stub_broker: StubBroker) -> StubBroker:
    """Every API test runs its actors on the shared fresh StubBroker (tests/conftest.py)."""
    return stub_broker


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """The fixtures make several users; the default (slow on purpose) hasher would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Shop:
    merchant: Any
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}"}


@dataclass
class World:
    """Three merchants, each with a key: ``acme`` (with two users), ``bolt`` and ``cobalt``."""

    acme: Shop
    bolt: Shop
    cobalt: Shop
    tenants: Any

    @property
    def shops(self) -> list[Shop]:
        return [self.acme, self.bolt, self.cobalt]


@pytest.fixture
def world(tenants) -> World:
    third = make_merchant("Cobalt Candles")
    shops = [
        Shop(m, api_key_create(merchant=m, name="storefront")[1])
        for m in (tenants.merchant, tenants.other_merchant, third)
    ]
    return World(*shops, tenants=tenants)


class ApiClient:
    """Django's test client with a key, speaking JSON, answering (status, parsed body, response)."""

    def __init__(self, key: str | None) -> None:
        self.client = Client()
        self.key = key

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        result = {"HTTP_AUTHORIZATION": f"Bearer {self.key}"} if self.key else {}
        for name, value in (headers or {}).items():
            result["HTTP_" + name.upper().replace("-", "_")] = value
        return result

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> Any:
        return self.client.get(path, **self._headers(headers))

    def post(self, path: str, body: Any = None, *, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(
            path,
            json.dumps(body if body is not None else {}),
            content_type="application/json",
            **self._headers(headers),
        )

    def post_multipart(
        self, path: str, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> Any:
        return self.client.post(path, data, **self._headers(headers))

    def delete(self, path: str, *, headers: dict[str, str] | None = None) -> Any:
        return self.client.delete(path, **self._headers(headers))


@pytest.fixture
def api(world) -> ApiClient:
    return ApiClient(world.acme.key)


def photo_bytes(size: tuple[int, int] = (160, 160), fmt: str = "PNG") -> bytes:
    """A product photo: a shaded red mug-like shape on a plain light backdrop."""
    width, height = size
    image = Image.new("RGB", size, (236, 235, 231))
    draw = ImageDraw.Draw(image)
    box = (width * 0.3, height * 0.25, width * 0.7, height * 0.8)
    draw.rounded_rectangle(box, radius=width * 0.05, fill=(170, 30, 35))
    draw.rectangle((width * 0.42, height * 0.35, width * 0.58, height * 0.6), fill=(235, 200, 60))
    draw.ellipse(
        (width * 0.66, height * 0.4, width * 0.8, height * 0.6),
        outline=(150, 25, 30),
        width=max(width // 40, 2),
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def data_uri(data: bytes, kind: str = "image/png") -> str:
    import base64

    return f"data:{kind};base64," + base64.b64encode(data).decode()


@pytest.fixture
def in_process_wsgi() -> Iterator[WSGIHandler]:
    """Django as a WSGI app for clients in this thread, sharing the test's database transaction.

    As Django's own test client does, the handlers that close database connections at the start
    and end of each request are disconnected meanwhile: they would close the test's connection.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def replicate_client(key: str, app: WSGIHandler) -> replicate.Client:
    """The published Replicate client, talking to this process's Django through WSGI (same database)."""
    return replicate.Client(
        api_token=key, base_url="https://testserver", transport=httpx.WSGITransport(app=app)
    )


def job_prepare_through_services(job: Job) -> None:
    """What the CPU worker does, through the same services: claim, store cutout, mask and control image."""
    claim = job_claim(public_id=str(job.public_id), stage="prepare")
    assert claim is not None
    job_mark_prepared(
        claim=claim,
        cutout=png_bytes(),
        mask=png_bytes(color=(255, 255, 255)),
        control=png_bytes(color=(0, 0, 0)),
        method="grabcut",
        confidence=0.93,
    )


def job_generate_through_services(
    job: Job, *, fail_index: int | None = None, gpu_seconds: float = 1.5
) -> Claim:
    """What the GPU worker does, short of finishing: every variation stored (or ``fail_index`` failed).

    Returns the claim still held, for ``job_finish``.
    """
    claim = job_claim(public_id=str(job.public_id), stage="generate")
    assert claim is not None
    variations = list(claim.job.variations.order_by("index"))
    claim.job.variations.update(steps=20)  # as the pipeline does from each style's settings
    variation_mark_started(claim=claim, indices=[v.index for v in variations])
    for variation in variations:
        if variation.index == fail_index:
            variation_mark_failed(job=claim.job, index=variation.index, message="The GPU ran out of memory.")
            continue
        variation_mark_succeeded(
            claim=claim,
            index=variation.index,
            generation=variation.generation,
            data=png_bytes(size=(128, 128), color=(10 * variation.index, 90, 160)),
            fmt="png",
            width=128,
            height=128,
            fidelity_max_delta=0,
            gpu_seconds=gpu_seconds,
        )
    return claim


def job_run_through_services(job: Job, *, fail_index: int | None = None, gpu_seconds: float = 1.5) -> Job:
    """The whole pipeline's writes through its services, with real PNGs stored; no engine involved.

    ``fail_index`` leaves one variation failed (the job then ends failed, as the pipeline would).
    """
    job_prepare_through_services(job)
    return job_finish(
        claim=job_generate_through_services(job, fail_index=fail_index, gpu_seconds=gpu_seconds)
    )


# -- a webhook receiver on 127.0.0.1 -------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST; answers each with the next of ``statuses`` (then 200)."""

    server: ThreadingHTTPServer
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mockups"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802  (the name http.server calls)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            this = state["receiver"]
            with this.lock:
                this.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = this.statuses.pop(0) if this.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(server=server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["receiver"]
    server.shutdown()
    server.server_close()
