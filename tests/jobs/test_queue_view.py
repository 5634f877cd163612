"""Queue position and ETA: every merchant's waiting jobs in creation order, read in a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mockups.accounts.services import api_key_create
from mockups.jobs.models import Job, JobStatus
from mockups.jobs.services import job_queue_position, queue_view
from tests.factories import make_job

pytestmark = pytest.mark.django_db

START = timezone.now() - timedelta(hours=1)


def jobs_at(merchant, statuses: list[str], *, first_minute: int = 0) -> list[Job]:
    """One job per status, a minute apart, starting ``first_minute`` minutes after START."""
    return [
        make_job(merchant=merchant, status=status, created_at=START + timedelta(minutes=first_minute + i))
        for i, status in enumerate(statuses)
    ]


def test_waiting_jobs_of_every_merchant_are_placed_in_creation_order(tenants):
    acme, bolt = tenants.merchant, tenants.other_merchant
    queued, preparing, generating, done = "queued", "preparing", "generating", "succeeded"
    # Interleaved: acme at even minutes, bolt at odd ones; running and finished jobs hold no place.
    acme_jobs = [
        jobs_at(acme, [s], first_minute=2 * i)[0]
        for i, s in enumerate([done, queued, generating, preparing, queued])
    ]
    bolt_jobs = [
        jobs_at(bolt, [s], first_minute=2 * i + 1)[0]
        for i, s in enumerate([queued, queued, done, queued, queued])
    ]

    view = queue_view(jobs=acme_jobs)

    # Global order of the waiting ones: bolt@1, acme@2, bolt@3, acme@6, bolt@7, acme@8, bolt@9.
    assert [view.position(job) for job in acme_jobs] == [0, 2, 0, 4, 6]
    assert [queue_view(jobs=bolt_jobs).position(job) for job in bolt_jobs] == [1, 3, 0, 5, 7]
    assert [view.position(job) for job in acme_jobs] == [job_queue_position(job=job) for job in acme_jobs]


def test_jobs_created_at_the_same_instant_are_ordered_by_id(tenants):
    first, second, third = jobs_at(tenants.merchant, ["queued", "queued", "queued"])
    Job.objects.filter(id__in=[first.id, second.id, third.id]).update(created_at=START)
    jobs = list(Job.objects.filter(id__in=[first.id, second.id, third.id]).order_by("-id"))

    view = queue_view(jobs=jobs)

    assert [view.position(job) for job in jobs] == [3, 2, 1]
    assert [job_queue_position(job=job) for job in jobs] == [3, 2, 1]


def test_the_eta_is_the_median_recent_gpu_time_times_the_jobs_ahead_and_running(tenants):
    merchant = tenants.merchant
    waiting = jobs_at(merchant, ["queued"], first_minute=50)[0]
    assert queue_view(jobs=[waiting]).eta_seconds(waiting) is None  # no history yet

    for minutes, seconds in enumerate([9.0, 3.0, 4.0, 30.0, 5.0]):
        make_job(
            merchant=merchant,
            status=JobStatus.SUCCEEDED,
            gpu_seconds=seconds,
            created_at=START + timedelta(minutes=minutes),
            finished_at=START + timedelta(minutes=minutes, seconds=30),
        )
    jobs_at(merchant, ["generating", "generating", "queued"], first_minute=10)
    view = queue_view(jobs=[waiting])

    assert view.seconds_per_job == 5.0 and view.running == 2
    assert view.position(waiting) == 2
    assert view.eta_seconds(waiting) == 5.0 * (2 + 2)
    finished = Job.objects.filter(status=JobStatus.SUCCEEDED).first()
    assert finished is not None and queue_view(jobs=[finished]).eta_seconds(finished) == 0.0


def test_a_page_of_queued_jobs_costs_the_same_queries_whatever_its_size(tenants, client):
    _, key = api_key_create(merchant=tenants.merchant, name="storefront")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    make_job(
        merchant=tenants.merchant,
        status=JobStatus.SUCCEEDED,
        gpu_seconds=4.0,
        created_at=START - timedelta(minutes=1),
        finished_at=START,
    )

    client.get("/api/v1/mockups", **auth)  # the key's first use records it: not part of the list

    def list_queries(count: int) -> tuple[int, list[int]]:
        jobs_at(tenants.merchant, ["queued"] * count, first_minute=len(Job.objects.all()))
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/api/v1/mockups?limit=100", **auth)
        assert response.status_code == 200, response.content
        return len(queries), [item["queue_position"] for item in response.json()["results"]]

    few, positions = list_queries(3)
    many, more_positions = list_queries(27)

    assert positions == [3, 2, 1, 0]
    assert more_positions == [*range(30, 0, -1), 0]
    assert many == few
