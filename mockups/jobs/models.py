"""A job: one product photo turned into up to five variations."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from mockups.accounts.models import Merchant
from mockups.catalog.models import StyleVersion


def job_file_path(prefix: str, job: Job, ext: str) -> str:
    # Generated names only: nothing a merchant typed ends up in a path.
    return f"jobs/{job.merchant.public_id}/{job.public_id}/{prefix}-{uuid.uuid4().hex[:12]}.{ext}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PREPARING = "preparing", "Preparing"
    GENERATING = "generating", "Generating"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


FINAL_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.GENERATING})


class JobSource(models.TextChoices):
    WEB = "web", "Browser"
    API = "api", "REST API"
    REPLICATE = "replicate", "Replicate-compatible API"
    PREVIEW = "preview", "Style preview"


class Job(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=16, choices=JobSource.choices, default=JobSource.WEB)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    product_name = models.CharField(max_length=120, blank=True)

    original = models.ImageField(upload_to="jobs/", max_length=300)
    original_width = models.PositiveIntegerField()
    original_height = models.PositiveIntegerField()
    original_sha256 = models.CharField(max_length=64)
    cutout = models.ImageField(upload_to="jobs/", max_length=300, blank=True)
    mask = models.ImageField(upload_to="jobs/", max_length=300, blank=True)
    control = models.ImageField(upload_to="jobs/", max_length=300, blank=True)
    cutout_method = models.CharField(
        max_length=60, blank=True, help_text="What made the cutout, e.g. rembg:u2net or grabcut."
    )
    cutout_confidence = models.FloatField(null=True, blank=True)

    # Everything a merchant chose beyond the styles: steps, guidance, negative prompt, preset, format...
    parameters = models.JSONField(default=dict, blank=True)
    base_model = models.CharField(max_length=100, blank=True)

    attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=60, blank=True)
    error = models.TextField(blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    event_seq = models.PositiveIntegerField(default=0)

    webhook_url = models.URLField(max_length=1000, blank=True)
    webhook_events = models.JSONField(default=list, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)

    # A worker working on the job holds a lease and renews it; a dead worker's lease runs out,
    # so its redelivered message can take over without two workers ever running the same stage.
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    gpu_seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField(default=timezone.now)
    prepared_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    generating_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["merchant", "-created_at"], name="job_merchant_newest"),
            models.Index(fields=["status", "created_at"], name="job_status_age"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="job_idempotency_key_unique",
            )
        ]

    def __str__(self) -> str:
        return f"Job {self.public_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_JOB_STATUSES


class VariationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    GENERATING = "generating", "Generating"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


class Variation(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="variations")
    index = models.PositiveSmallIntegerField()
    style_version = models.ForeignKey(StyleVersion, on_delete=models.PROTECT, related_name="variations")
    status = models.CharField(max_length=16, choices=VariationStatus.choices, default=VariationStatus.QUEUED)
    seed = models.BigIntegerField()
    prompt = models.TextField(blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # Bumped by "regenerate": a result from an older generation is never stored over a newer one.
    generation = models.PositiveIntegerField(default=1)
    step = models.PositiveIntegerField(default=0)
    steps = models.PositiveIntegerField(default=0)
    image = models.ImageField(upload_to="jobs/", max_length=300, blank=True)
    image_format = models.CharField(max_length=8, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    fidelity_max_delta = models.PositiveIntegerField(
        null=True, blank=True, help_text="Largest change on a fully opaque product pixel (0 = pixel-exact)."
    )
    gpu_seconds = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="variation_job_index_unique")]

    def __str__(self) -> str:
        return f"{self.job.public_id} #{self.index} ({self.status})"
