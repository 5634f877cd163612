"""Reads for jobs and variations. Each takes the merchant; another merchant's id is NotFound."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from mockups.accounts.models import Merchant
from mockups.errors import NotFound
from mockups.jobs.models import Job, Variation


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def job_list(*, merchant: Merchant) -> QuerySet[Job]:
    """The merchant's jobs, newest first, with their variations and style versions in two queries."""
    variations = Variation.objects.select_related("style_version__style").order_by("index")
    return (
        Job.objects.filter(merchant=merchant)
        .select_related("merchant")
        .prefetch_related(Prefetch("variations", queryset=variations))
        .order_by("-created_at", "-id")
    )


def job_get(*, merchant: Merchant, public_id: object) -> Job:
    """One of the merchant's jobs. Missing, malformed and not-yours all answer NotFound alike."""
    job_id = _uuid_or_none(public_id)
    job = job_list(merchant=merchant).filter(public_id=job_id).first() if job_id else None
    if job is None:
        raise NotFound("No such mockup job.")
    return job


def variation_get(*, merchant: Merchant, job_public_id: object, index: int) -> Variation:
    job = job_get(merchant=merchant, public_id=job_public_id)
    variation = next((v for v in job.variations.all() if v.index == index), None)
    if variation is None:
        raise NotFound(f"This job has no variation {index}.")
    return variation


def job_active_count(*, merchant: Merchant) -> int:
    """Queued plus running jobs, for the per-merchant limit."""
    return Job.objects.filter(merchant=merchant, status__in=["queued", "preparing", "generating"]).count()
