"""Benchmark: REST API throughput and latency under concurrent clients, on loopback. Prints a table.

    python benchmarks/api_load.py [--repeats 5] [--concurrency 16] [--reads 2000] [--creates 200]

Starts a real site (daphne, one process, on 127.0.0.1; its own data folder; SQLite, or the
PostgreSQL server of ``DATABASE_URL`` in a database of its own), creates a merchant and a key,
then measures, with ``--concurrency`` clients sharing keep-alive connections:

- ``GET /v1/predictions/{id}``: ``--reads`` requests per repeat, spread over 50 predictions;
- ``POST /v1/models/mockups/product-mockup/predictions``: ``--creates`` requests per repeat, each
  with a 256x256 PNG as a data URI and one style (intake, storage, rows, enqueue).

Requests per second is the median over the repeats (min and max shown); p50 and p99 latency are
taken over the requests of the median repeat. The queue workers are off (``EMBEDDED_WORKER=0``)
and the per-merchant job limit is lifted, so creates measure the API and not the GPU; the load
generator runs on the same machine, so both share its cores. Bounded: every request has a 30 s
timeout and every repeat a fixed number of requests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import io
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
PREDICTIONS = "/v1/models/mockups/product-mockup/predictions"


def _device() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _photo_data_uri() -> str:
    image = Image.new("RGB", (256, 256), (236, 235, 231))
    ImageDraw.Draw(image).rounded_rectangle((80, 60, 176, 200), radius=12, fill=(170, 30, 35))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@dataclass
class Site:
    process: subprocess.Popen[bytes]
    base_url: str
    key: str
    database: str
    admin_url: str


def _postgres(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


def site_start(data_dir: Path) -> Site:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="mockups.settings",
        DATA_DIR=str(data_dir),
        REDIS_URL="",
        BROKER_URL="",
        CHANNEL_REDIS_URL="",
        EMBEDDED_WORKER="0",
        MERCHANT_MAX_ACTIVE_JOBS="100000000",
        LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1",
    )
    database, admin_url = "", os.environ.get("DATABASE_URL", "")
    if admin_url.startswith("postgres"):
        database = f"mockups_bench_{uuid.uuid4().hex[:8]}"
        _postgres(admin_url, f'CREATE DATABASE "{database}"')
        env["DATABASE_URL"] = admin_url.rsplit("/", 1)[0] + "/" + database
    else:
        env["DATABASE_URL"] = f"sqlite:///{data_dir / 'bench.sqlite3'}"

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    manage("migrate", "--no-input", "-v", "0")
    key = manage("createmerchant", "Bench Shop", "--email", "bench@example.com").strip().splitlines()[-1]
    port = _free_port()
    log = (data_dir / "web.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mockups.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2):  # noqa: S310  (our loopback site)
                break
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"the site did not start; see {data_dir / 'web.log'}")
    return Site(process, base_url, key, database, admin_url)


def site_stop(site: Site) -> None:
    site.process.send_signal(signal.SIGTERM)
    try:
        site.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        site.process.kill()
    if site.database:
        _postgres(site.admin_url, f'DROP DATABASE IF EXISTS "{site.database}" WITH (FORCE)')


@dataclass
class Run:
    seconds: float
    latencies: list[float]
    errors: int
    first_error: str = ""

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds


async def _load(
    site: Site, *, requests: list[tuple[str, str, Any]], concurrency: int, headers: dict[str, str]
) -> Run:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    first_error = ""
    cursor = iter(requests)
    async with httpx.AsyncClient(
        base_url=site.base_url, headers=headers, limits=limits, timeout=30.0
    ) as client:

        async def worker() -> None:
            nonlocal errors, first_error
            for method, path, body in cursor:
                started = time.perf_counter()
                response = await client.request(method, path, json=body)
                elapsed = time.perf_counter() - started
                if response.status_code >= 400:
                    errors += 1
                    first_error = first_error or f"{response.status_code} {response.text[:300]}"
                else:
                    latencies.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(seconds, latencies, errors, first_error)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def measure(
    site: Site, name: str, requests: list[tuple[str, str, Any]], *, repeats: int, concurrency: int
) -> list[str]:
    headers = {"Authorization": f"Bearer {site.key}"}
    asyncio.run(
        _load(
            site, requests=requests[: max(len(requests) // 10, 1)], concurrency=concurrency, headers=headers
        )
    )
    runs = [
        asyncio.run(_load(site, requests=requests, concurrency=concurrency, headers=headers))
        for _ in range(repeats)
    ]
    ranked = sorted(runs, key=lambda run: run.rps)
    median = ranked[len(ranked) // 2]
    for run in runs:
        if run.first_error:
            print(f"{name}: {run.errors} errors, the first: {run.first_error}", file=sys.stderr)
            break
    return [
        name,
        f"{statistics.median(r.rps for r in runs):.0f}",
        f"{ranked[0].rps:.0f}-{ranked[-1].rps:.0f}",
        f"{_percentile(median.latencies, 0.5) * 1000:.1f}",
        f"{_percentile(median.latencies, 0.99) * 1000:.1f}",
        str(sum(r.errors for r in runs)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reads", type=int, default=2000, help="GET requests per repeat")
    parser.add_argument("--creates", type=int, default=200, help="create requests per repeat")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mockups-bench-") as folder:
        site = site_start(Path(folder))
        try:
            image = _photo_data_uri()
            body = {"input": {"image": image, "styles": ["forest-moss"]}}
            seed_ids = [
                httpx.post(
                    site.base_url + PREDICTIONS,
                    json=body,
                    headers={"Authorization": f"Bearer {site.key}"},
                    timeout=30,
                ).json()["id"]
                for _ in range(50)
            ]
            reads = [
                ("GET", f"/v1/predictions/{seed_ids[i % len(seed_ids)]}", None) for i in range(args.reads)
            ]
            creates = [("POST", PREDICTIONS, body) for _ in range(args.creates)]
            rows = [
                measure(
                    site,
                    "GET /v1/predictions/{id}",
                    reads,
                    repeats=args.repeats,
                    concurrency=args.concurrency,
                ),
                measure(
                    site,
                    "POST .../predictions (create)",
                    creates,
                    repeats=args.repeats,
                    concurrency=args.concurrency,
                ),
            ]
        finally:
            site_stop(site)

    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(f"API load on {_device()}; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"server: daphne, 1 process, {database}, queue workers off; "
        f"{args.concurrency} concurrent clients (httpx, keep-alive) on the same machine; "
        f"median of {args.repeats} repeats"
    )
    header = ["operation", "req/s (median)", "req/s (min-max)", "p50 ms", "p99 ms", "errors"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
