"""Reads for the API. Each takes the merchant; another merchant's id is NotFound, like a missing one."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.utils import timezone

from mockups.accounts.models import Merchant
from mockups.api.models import UploadedFile, WebhookDelivery
from mockups.errors import NotFound
from mockups.jobs.models import Job
from mockups.jobs.selectors import job_list


def api_job_list(*, merchant: Merchant) -> QuerySet[Job]:
    """The merchant's jobs with everything a representation reads, in a fixed number of queries."""
    return job_list(merchant=merchant).select_related("api_context")


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def api_job_get(*, merchant: Merchant, public_id: object) -> Job:
    """One of the merchant's jobs by its UUID (dashed or 32 hex digits); NotFound for anything else."""
    job_id = _uuid_or_none(public_id)
    job = api_job_list(merchant=merchant).filter(public_id=job_id).first() if job_id else None
    if job is None:
        raise NotFound("No such mockup job.")
    return job


def job_for_idempotency_key(*, merchant: Merchant, key: str) -> Job | None:
    if not key:
        return None
    return api_job_list(merchant=merchant).filter(idempotency_key=key).first()


def uploaded_file_list(*, merchant: Merchant) -> QuerySet[UploadedFile]:
    """The merchant's files that can still be used, newest first."""
    return UploadedFile.objects.filter(merchant=merchant, expires_at__gt=timezone.now()).order_by(
        "-created_at", "-public_id"
    )


def uploaded_file_get(*, merchant: Merchant, public_id: object) -> UploadedFile:
    file_id = _uuid_or_none(public_id)
    upload = uploaded_file_list(merchant=merchant).filter(public_id=file_id).first() if file_id else None
    if upload is None:
        raise NotFound("No such file (it may have expired).")
    return upload


def webhook_delivery_list(*, merchant: Merchant, job: Job | None = None) -> QuerySet[WebhookDelivery]:
    deliveries = WebhookDelivery.objects.filter(merchant=merchant)
    if job is not None:
        deliveries = deliveries.filter(job=job)
    return deliveries.order_by("created_at", "id")
