"""End-to-end figures with the tiny engine: upload -> first event -> first image -> last image,
and how many websocket clients one web process serves at what event latency.

    .venv/bin/python benchmarks/e2e_latency.py [--repeats 5] [--clients 50,200]

Starts a real site (web + CPU worker + GPU worker processes) on loopback: PostgreSQL and Redis
when DATABASE_URL / REDIS_URL are set (production shape), else the embedded default.
Prints medians of repeats. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from tests.e2e.site import Browser, site_create, site_destroy  # noqa: E402
from tests.images import product_photo  # noqa: E402

PASSWORD = "benchmark password 123"
STYLES = ["marble-kitchen", "forest-moss", "concrete-loft", "sunlit-beach", "pastel-gradient"]


def photo() -> bytes:
    buffer = io.BytesIO()
    product_photo("mug", width=640, height=480).image.save(buffer, format="PNG")
    return buffer.getvalue()


async def one_job(site, browser, data: bytes) -> dict[str, float]:
    t0 = time.perf_counter()
    status, job = browser.upload(data, styles=STYLES)
    assert status == 201, job
    t_created = time.perf_counter()
    url = f"ws://127.0.0.1:{site.port}/ws/mockups/{job['id']}/"
    marks: dict[str, float] = {"created": t_created - t0}
    headers = {"Cookie": f"sessionid={browser.cookie('sessionid')}", "Origin": site.base_url}
    async with websockets.connect(url, additional_headers=headers) as ws:
        images = 0
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout=600))
            now = time.perf_counter() - t0
            marks.setdefault("first_event", now)
            if event["type"] == "variation.succeeded":
                images += 1
                marks.setdefault("first_image", now)
                if images == len(STYLES):
                    marks["last_image"] = now
            if event["type"] == "job.status" and event["status"] in {"succeeded", "failed", "canceled"}:
                marks["final"] = now
                break
    snapshot = browser.job(job["id"])
    marks["gpu_seconds"] = snapshot["gpu_seconds"]
    return marks


async def fan_out(site, browser, clients: int) -> dict[str, float]:
    """N sockets on one job; event latency = receive time - publish time of the same seq on socket 0."""
    status, job = browser.upload(photo(), styles=STYLES[:2])
    assert status == 201
    url = f"ws://127.0.0.1:{site.port}/ws/mockups/{job['id']}/"
    headers = {"Cookie": f"sessionid={browser.cookie('sessionid')}", "Origin": site.base_url}
    arrivals: list[dict[int, float]] = [dict() for _ in range(clients)]

    async def client(i: int) -> None:
        async with websockets.connect(url, additional_headers=headers, open_timeout=60) as ws:
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout=600))
                arrivals[i][event["seq"]] = time.perf_counter()
                if event["type"] == "job.status" and event["status"] in {"succeeded", "failed", "canceled"}:
                    return

    results = await asyncio.gather(*(client(i) for i in range(clients)), return_exceptions=True)
    ok = [a for a, r in zip(arrivals, results, strict=True) if not isinstance(r, Exception) and a]
    spreads = []
    for seq in set().union(*[a.keys() for a in ok]):
        times = [a[seq] for a in ok if seq in a]
        if len(times) == len(ok):
            spreads.append((max(times) - min(times)) * 1000)
    return {
        "clients": clients,
        "served": len(ok),
        "events_per_client": statistics.median(len(a) for a in ok) if ok else 0,
        "spread_p50_ms": statistics.median(spreads) if spreads else float("nan"),
        "spread_max_ms": max(spreads) if spreads else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", default="50,200")
    args = parser.parse_args()
    import os

    with tempfile.TemporaryDirectory() as tmp:
        site = site_create(Path(tmp))
        try:
            site.manage("createmerchant", "Bench", "--email", "bench@example.test", "--password", PASSWORD)
            site.env["MERCHANT_MAX_ACTIVE_JOBS"] = "1000"
            if os.environ.get("REDIS_URL"):
                site.start_worker("cpu", "cpu", "webhooks", threads=2)
                site.start_worker("gpu", "gpu")
            site.start_web()
            browser = Browser(site)
            browser.login("bench@example.test", PASSWORD)
            data = photo()
            asyncio.run(one_job(site, browser, data))  # warm-up: engine loaded, caches filled
            runs = [asyncio.run(one_job(site, browser, data)) for _ in range(args.repeats)]
            mode = (
                "PostgreSQL + Redis, separate workers" if os.environ.get("REDIS_URL") else "embedded default"
            )
            print(
                f"# end to end, tiny engine, {mode}; {platform.machine()}, {os.cpu_count()} CPUs; "
                f"{dt.date.today()}; median of {args.repeats} (after 1 warm-up); 5 variations, 640x480 photo"
            )
            print("| mark | median s |\n| --- | --- |")
            for key in ["created", "first_event", "first_image", "last_image", "final", "gpu_seconds"]:
                print(f"| {key} | {statistics.median(r[key] for r in runs):.3f} |")
            overhead = statistics.median((r["final"] - r["gpu_seconds"]) / r["final"] for r in runs)
            print(f"share of the wall time outside the engine (queue, web, cutout, storage): {overhead:.0%}")
            for n in [int(x) for x in args.clients.split(",") if x]:
                print(asyncio.run(fan_out(site, browser, n)))
        finally:
            site_destroy(site)


if __name__ == "__main__":
    main()
