"""Tenants (merchants), their users and their API keys."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


def webhook_secret_default() -> str:
    """Replicate's format: ``whsec_`` + standard base64; its clients split on ``_``, so not URL-safe."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Merchant(models.Model):
    """A shop. Owns every job, image, key and webhook; nothing crosses merchants."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    max_active_jobs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Queued plus running jobs allowed at once; empty uses the site default.",
    )
    webhook_secret = models.CharField(max_length=80, default=webhook_secret_default)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def active_job_limit(self) -> int:
        return self.max_active_jobs or settings.MERCHANT_MAX_ACTIVE_JOBS


class Membership(models.Model):
    """A user works for exactly one merchant."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant} ({self.role})"


class ApiKey(models.Model):
    """A bearer key for the REST API. Only a prefix and a SHA-256 of the key are stored.

    Keys look like ``ms_<prefix>_<secret>``: the prefix finds the row, the hash proves the key.
    SHA-256 (not a slow password hash) is right here because the secret has 256 bits of entropy.
    """

    PREFIX_LENGTH = 10

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"ms_{self.prefix}_… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash_secret(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def generate(cls) -> tuple[str, str]:
        """A new (prefix, raw key) pair; the raw key is shown to its owner once."""
        prefix = secrets.token_hex(cls.PREFIX_LENGTH // 2)
        return prefix, f"ms_{prefix}_{secrets.token_urlsafe(32)}"

    def matches(self, raw_key: str) -> bool:
        return secrets.compare_digest(self.key_hash, self.hash_secret(raw_key))
