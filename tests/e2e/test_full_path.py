"""The whole path on real servers: web (daphne), a CPU worker and a GPU worker as processes,
PostgreSQL and Redis (broker and channel layer) when the suite runs on them.

upload -> prepare (cutout) -> generate (tiny engine) -> five variations, events in order over a
real websocket, images served; a GPU worker killed mid-job; a job that keeps killing its worker.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
import urllib.request
from typing import Any

import pytest
import websockets
from PIL import Image

from tests.e2e.site import Browser, Site, site_create, site_destroy, wait_until
from tests.images import product_photo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs the real Redis"),
]

PASSWORD = "a long test password 1"
STYLES = ["marble-kitchen", "forest-moss", "concrete-loft", "sunlit-beach", "marketplace-white"]


@pytest.fixture
def site(tmp_path):
    site = site_create(
        tmp_path,
        extra_env={
            "REDIS_URL": os.environ["REDIS_URL"],
            "JOB_LEASE_S": "3",
            "BROKER_HEARTBEAT_TIMEOUT_MS": "3000",
            "JOB_MAX_ATTEMPTS": "2",
            "BROKER_MAINTENANCE_CHANCE": "300000",
        },
    )
    site.manage("createmerchant", "E2E Shop", "--email", "owner@e2e.test", "--password", PASSWORD)
    site.manage("createmerchant", "Other Shop", "--email", "stranger@e2e.test", "--password", PASSWORD)
    yield site
    site_destroy(site)


def photo_bytes() -> bytes:
    buffer = io.BytesIO()
    product_photo("bottle", width=320, height=320).image.save(buffer, format="PNG")
    return buffer.getvalue()


async def collect_events(
    site: Site, browser: Browser, job_id: str, *, until: str, timeout: float = 240
) -> list[dict[str, Any]]:
    cookie = f"sessionid={browser.cookie('sessionid')}"
    url = f"ws://127.0.0.1:{site.port}/ws/mockups/{job_id}/"
    events: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": site.base_url}) as ws:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic()))
            events.append(message)
            if message["type"] == "job.status" and message["status"] == until:
                break
    return events


def start_workers(site: Site) -> None:
    site.start_worker("cpu", "cpu", "webhooks", threads=2)
    site.start_worker("gpu", "gpu")


def test_an_upload_becomes_five_mockups_streamed_over_a_real_websocket(site):
    start_workers(site)
    site.start_web()
    browser = Browser(site)
    browser.login("owner@e2e.test", PASSWORD)
    status, job = browser.upload(photo_bytes(), styles=STYLES)
    assert status == 201, job
    events = asyncio.run(collect_events(site, browser, job["id"], until="succeeded"))

    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "events arrive in order, each once"
    types = [e["type"] for e in events]
    assert "job.cutout" in types
    first_progress = next(
        i for i, e in enumerate(events) if e["type"] == "variation.progress" and e["index"] == 0
    )
    done = next(i for i, e in enumerate(events) if e["type"] == "variation.succeeded" and e["index"] == 0)
    assert types.index("job.cutout") < first_progress < done
    assert {e["index"] for e in events if e["type"] == "variation.succeeded"} == {0, 1, 2, 3, 4}
    assert all(e["job"] == job["id"] for e in events)

    final = browser.job(job["id"])
    assert final["status"] == "succeeded"
    assert [v["status"] for v in final["variations"]] == ["succeeded"] * 5
    assert all(v["fidelity_max_delta"] == 0 for v in final["variations"])
    for variation in final["variations"]:
        with urllib.request.urlopen(
            site.base_url + variation["image"], timeout=30
        ) as response:  # no cookie needed
            image = Image.open(io.BytesIO(response.read()))
            assert (image.width, image.height) == (variation["width"], variation["height"])


def test_a_gpu_worker_killed_mid_job_leaves_the_job_to_finish_exactly_once_after_restart(site):
    site.start_worker("cpu", "cpu", "webhooks", threads=2)
    site.start_worker("gpu", "gpu")
    site.start_web()
    browser = Browser(site)
    browser.login("owner@e2e.test", PASSWORD)
    # A style with many steps, so the kill lands in the middle of denoising.
    site.manage(
        "shell",
        "-c",
        "from mockups.catalog.services import style_create; "
        "style_create(slug='slow', name='Slow', prompt_template='{product} on a table', steps=100)",
    )
    status, job = browser.upload(photo_bytes(), styles=["slow"], count=5)
    assert status == 201

    wait_until(
        lambda: any(v["step"] > 0 for v in browser.job(job["id"])["variations"]),
        timeout=240,
        interval=0.05,
        what="denoising to start",
    )
    site.kill("gpu")
    site.start_worker("gpu2", "gpu")
    final = wait_until(
        lambda: (j := browser.job(job["id"]))["status"] in {"succeeded", "failed", "canceled"} and j,
        timeout=300,
        interval=0.5,
        what="the job to finish after the restart",
    )
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2, "the killed attempt and the one after the restart"
    assert [v["index"] for v in final["variations"]] == [0, 1, 2, 3, 4]
    assert len({v["image"].split("/")[-1] for v in final["variations"]}) == 5
    assert site.log("gpu2").count("engine ready") == 1


def test_a_job_that_keeps_killing_its_worker_ends_failed_after_the_attempt_limit(site):
    site.start_worker("cpu", "cpu", "webhooks", threads=2)
    site.start_web()
    browser = Browser(site)
    browser.login("owner@e2e.test", PASSWORD)
    status, job = browser.upload(photo_bytes(), styles=["marble-kitchen"])
    assert status == 201
    wait_until(lambda: browser.job(job["id"])["cutout"], timeout=240, what="the cutout")
    # Every GPU worker that takes this job dies on it (as with an image that exhausts its memory).
    for attempt in (1, 2):
        site.start_worker(f"gpu{attempt}", "gpu")
        wait_until(
            lambda n=attempt: (j := browser.job(job["id"]))["status"] == "generating" and j["attempts"] == n,
            timeout=240,
            what=f"GPU worker {attempt} to take the job",
        )
        site.kill(f"gpu{attempt}")
    site.start_worker("gpu-last", "gpu")
    final = wait_until(
        lambda: (j := browser.job(job["id"]))["status"] in {"failed", "succeeded"} and j,
        timeout=240,
        what="the verdict",
    )
    assert final["status"] == "failed"
    assert final["error_code"] == "gave_up"
    assert "failed 2 times" in final["error"]


def test_the_websocket_serves_only_the_merchants_own_jobs_to_a_session_from_the_right_origin(site):
    site.start_web()
    owner, stranger = Browser(site), Browser(site)
    owner.login("owner@e2e.test", PASSWORD)
    stranger.login("stranger@e2e.test", PASSWORD)
    status, job = owner.upload(photo_bytes(), styles=["marble-kitchen"])
    assert status == 201
    url = f"ws://127.0.0.1:{site.port}/ws/mockups/{job['id']}/"

    async def outcome(cookie: str | None, origin: str) -> str:
        headers = {"Origin": origin, **({"Cookie": cookie} if cookie else {})}
        try:
            async with websockets.connect(url, additional_headers=headers) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                return "open" if reply.get("type") in {"pong", "job.status", "job.cutout"} else "open"
        except websockets.exceptions.ConnectionClosedError as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else ''}".strip()
        except websockets.exceptions.InvalidStatus as exc:
            return f"rejected {exc.response.status_code}"

    own = f"sessionid={owner.cookie('sessionid')}"
    other = f"sessionid={stranger.cookie('sessionid')}"
    assert asyncio.run(outcome(own, site.base_url)) == "open"
    assert asyncio.run(outcome(other, site.base_url)) == "closed 4404"
    assert asyncio.run(outcome(None, site.base_url)) == "closed 4404"
    assert asyncio.run(outcome(own, "http://evil.example")).startswith("rejected 403")
