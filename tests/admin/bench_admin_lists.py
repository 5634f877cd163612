"""How the admin's pages behave with 100,000 jobs: time and queries per page, as a table.

    python -m tests.admin.bench_admin_lists                 # SQLite (in-memory test database)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_DATABASE_NAME=bench_admin \\
        python -m tests.admin.bench_admin_lists             # PostgreSQL (a throw-away database)

Builds a throw-away test database, fills it with ``--jobs`` finished jobs (two variations each, one
webhook delivery per ten jobs), then requests each page ``--repeats`` times as a logged-in superuser
and prints the median, for the whole request and for its SQL alone (the rest is rendering 50-100
rows of HTML). Not a test: figures depend on the machine; the query-count tests in
``test_query_counts.py`` keep the shape of the queries honest.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from typing import Any


def _fill(jobs: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db import connection
    from django.utils import timezone

    from mockups.accounts.models import Merchant
    from mockups.api.models import WebhookDelivery
    from mockups.catalog.models import Style
    from mockups.catalog.services import style_create
    from mockups.fleet.models import GpuWorker
    from mockups.jobs.models import Job, Variation

    merchants = [Merchant.objects.create(name=f"Shop {n}") for n in range(50)]
    styles = list(Style.objects.exclude(current_version=None)[:2]) or [
        style_create(slug=f"bench-{n}", name=f"Bench {n}", prompt_template="{product}") for n in range(2)
    ]
    original = default_storage.save("bench/original.png", ContentFile(b"\x89PNG"))
    now = timezone.now()
    batch = 5000
    for start in range(0, jobs, batch):
        made = Job.objects.bulk_create(
            Job(
                merchant=merchants[n % len(merchants)],
                status="succeeded" if n % 17 else "failed",
                source="web",
                original=original,
                original_width=1024,
                original_height=1024,
                original_sha256=hashlib.sha256(str(n).encode()).hexdigest(),
                created_at=now,
                finished_at=now,
                webhook_url="https://shop.example/hook" if n % 10 == 0 else "",
            )
            for n in range(start, min(start + batch, jobs))
        )
        if made[0].pk is None:
            made = list(Job.objects.order_by("-id")[: len(made)])
        Variation.objects.bulk_create(
            Variation(
                job=job, index=index, style_version=style.current_version, status="succeeded", seed=index
            )
            for job in made
            for index, style in enumerate(styles)
        )
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                job=job,
                merchant_id=job.merchant_id,
                event="completed",
                webhook_id=f"msg_{job.public_id.hex}",
                url=job.webhook_url,
                attempt=1,
                status_code=200,
            )
            for job in made
            if job.webhook_url
        )
    for n in range(8):
        GpuWorker.objects.create(name=f"gpu-{n}:1", hostname=f"gpu-{n}", pid=1, queues=["gpu"])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-password")
    some_job = Job.objects.order_by("-id").first()
    assert some_job is not None
    return {"user": user, "job": some_job}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    media = tempfile.mkdtemp(prefix="bench-admin-media-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mockups.settings")
    os.environ["MEDIA_ROOT"] = media
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import (
        CaptureQueriesContext,
        setup_databases,
        setup_test_environment,
        teardown_databases,
    )
    from django.urls import reverse

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        started = time.perf_counter()
        world = _fill(args.jobs)
        fill_s = time.perf_counter() - started
        client = Client()
        client.force_login(world["user"])
        middle = max(1, args.jobs // 50 // 2)  # 50 jobs a page
        pages = [
            ("jobs, first page", reverse("admin:jobs_job_changelist"), {}),
            ("jobs, failed only", reverse("admin:jobs_job_changelist"), {"status__exact": "failed"}),
            (f"jobs, page {middle:,} (middle)", reverse("admin:jobs_job_changelist"), {"p": str(middle)}),
            (
                "jobs, search a job id",
                reverse("admin:jobs_job_changelist"),
                {"q": str(world["job"].public_id)},
            ),
            ("jobs, search a shop name", reverse("admin:jobs_job_changelist"), {"q": "Shop 7"}),
            ("one job", reverse("admin:jobs_job_change", args=[world["job"].pk]), {}),
            ("variations, first page", reverse("admin:jobs_variation_changelist"), {}),
            ("webhook deliveries", reverse("admin:api_webhookdelivery_changelist"), {}),
            ("merchants", reverse("admin:accounts_merchant_changelist"), {}),
            ("styles", reverse("admin:catalog_style_changelist"), {}),
            ("LoRAs", reverse("admin:catalog_lora_changelist"), {}),
            ("GPU health", reverse("admin:health"), {}),
        ]
        rows = []
        for label, url, params in pages:
            times, sql_times = [], []
            queries = 0
            for _ in range(args.repeats):
                with CaptureQueriesContext(connection) as captured:
                    begun = time.perf_counter()
                    response = client.get(url, params)
                    times.append((time.perf_counter() - begun) * 1000)
                assert response.status_code == 200, (label, response.status_code)
                queries = len(captured)
                sql_times.append(sum(float(query["time"]) for query in captured.captured_queries) * 1000)
            rows.append((label, statistics.median(times), max(times), statistics.median(sql_times), queries))
        print(
            f"admin pages at {args.jobs:,} jobs · {connection.vendor} · {platform.processor() or platform.machine()}"
            f" · {os.cpu_count()} CPUs · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · filled in {fill_s:.0f} s"
        )
        print(f"{'page':<28} {'median ms':>10} {'max ms':>8} {'SQL ms':>8} {'queries':>8}")
        for label, median, worst, sql, queries in rows:
            print(f"{label:<28} {median:>10.1f} {worst:>8.1f} {sql:>8.1f} {queries:>8}")
    finally:
        teardown_databases(old, verbosity=0)


if __name__ == "__main__":
    main()
