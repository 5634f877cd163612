"""Dramatiq actors: thin wrappers that call the pipeline. Messages carry job ids only."""

from __future__ import annotations

import dramatiq
from django.conf import settings

from mockups.jobs import pipeline
from mockups.queue import QUEUE_CPU, QUEUE_GPU

# Retries are for transient trouble (a lease still held, storage or database hiccups, a worker
# crash). Attempts are also counted on the job row, so a poison image stops after
# JOB_MAX_ATTEMPTS whatever the broker does; permanent errors are recorded, never raised.
MAX_RETRIES = 20
MIN_BACKOFF_MS = 500
MAX_BACKOFF_MS = 30_000


@dramatiq.actor(
    queue_name=QUEUE_CPU,
    time_limit=settings.JOB_TIME_LIMIT_S * 1000,
    max_age=settings.JOB_MAX_AGE_S * 1000,
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
)
def job_prepare(job_id: str) -> None:
    """Cutout, mask, confidence and control image, then hand over to the GPU queue."""
    pipeline.prepare(job_id)


@dramatiq.actor(
    queue_name=QUEUE_GPU,
    time_limit=settings.JOB_TIME_LIMIT_S * 1000,
    max_age=settings.JOB_MAX_AGE_S * 1000,
    max_retries=MAX_RETRIES,
    min_backoff=MIN_BACKOFF_MS,
    max_backoff=MAX_BACKOFF_MS,
)
def job_generate(job_id: str) -> None:
    """Generate the job's pending variations on the resident engine."""
    pipeline.generate(job_id)
