"""What the REST API keeps of its own: files uploaded to ``/v1/files`` and the log of webhook deliveries."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from mockups.accounts.models import Merchant
from mockups.jobs.models import Job


def uploaded_file_path(instance: UploadedFile, filename: str) -> str:
    # Generated names only: the name a client sent is kept in a column, never used as a path.
    return f"uploads/{instance.merchant.public_id}/{instance.public_id}/{uuid.uuid4().hex[:12]}"


class UploadedFile(models.Model):
    """A file a merchant uploaded to use as a prediction input (Replicate's ``/v1/files``).

    Only photos are accepted (they pass the same intake check as every upload); the bytes are kept
    exactly as received, so the checksums describe what the client sent.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="uploaded_files")
    file = models.FileField(upload_to=uploaded_file_path, max_length=300)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    md5 = models.CharField(max_length=32)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-public_id"]
        indexes = [models.Index(fields=["merchant", "-created_at"], name="upload_merchant_newest")]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class JobApiContext(models.Model):
    """What a job created over the API remembers of its request, for representations made later.

    Webhooks are built by workers, away from any request: ``base_url`` (the origin the client
    called) makes their URLs absolute when ``API_BASE_URL`` is not set, and ``input`` is the
    prediction input echoed back as the client sent it (data URIs abbreviated).
    """

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="api_context")
    base_url = models.CharField(max_length=300, blank=True)
    input = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"API context of {self.job.public_id}"


class WebhookDelivery(models.Model):
    """One attempt to deliver one webhook event: kept for every attempt, successful or not."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="webhook_deliveries")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=16)
    webhook_id = models.CharField(max_length=100, help_text="The webhook-id header; the same on every retry.")
    url = models.URLField(max_length=1000)
    attempt = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.FloatField(default=0.0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["job", "created_at"], name="webhook_delivery_job")]

    def __str__(self) -> str:
        outcome = self.status_code if self.status_code is not None else (self.error[:40] or "?")
        return f"{self.event} #{self.attempt} -> {self.url} ({outcome})"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
