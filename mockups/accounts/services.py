"""Writes for merchants, their users and API keys."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from mockups.accounts.models import ApiKey, Membership, Merchant
from mockups.errors import Conflict, NotFound, ValidationFailed


@transaction.atomic
def merchant_create(
    *, name: str, email: str, password: str | None = None, username: str | None = None
) -> tuple[Merchant, AbstractBaseUser, str]:
    """Create a merchant, its first user (owner) and its first API key.

    Returns (merchant, user, raw_key); the raw key is never stored and cannot be shown again.
    With no password the user cannot log in to the browser UI until one is set.
    """
    name = name.strip()
    if not name:
        raise ValidationFailed("A merchant needs a name.")
    User = get_user_model()
    username = (username or email).strip()
    if User.objects.filter(username=username).exists():
        raise Conflict(f"A user named {username!r} already exists.")
    merchant = Merchant.objects.create(name=name)
    user = User.objects.create_user(username=username, email=email.strip(), password=password)
    if password is None:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    Membership.objects.create(user=user, merchant=merchant, role=Membership.Role.OWNER)
    _key, raw = api_key_create(merchant=merchant, name="default", created_by=user)
    return merchant, user, raw


def member_add(
    *, merchant: Merchant, username: str, email: str, password: str | None = None
) -> AbstractBaseUser:
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.create_user(username=username, email=email, password=password)
        Membership.objects.create(user=user, merchant=merchant, role=Membership.Role.MEMBER)
    return user


def api_key_create(
    *, merchant: Merchant, name: str = "default", created_by: Any = None
) -> tuple[ApiKey, str]:
    """A new key for the merchant. The raw key is returned once and only its hash is kept."""
    prefix, raw = ApiKey.generate()
    key = ApiKey.objects.create(
        merchant=merchant,
        name=name.strip() or "default",
        prefix=prefix,
        key_hash=ApiKey.hash_secret(raw),
        created_by=created_by,
    )
    return key, raw


def api_key_revoke(*, merchant: Merchant, public_id: str) -> ApiKey:
    """Revoke one of the merchant's keys (idempotent). Another merchant's key is not found."""
    key = ApiKey.objects.filter(merchant=merchant, public_id=public_id).first()
    if key is None:
        raise NotFound("No such API key.")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key for a raw bearer token, or None. Records when it was last used.

    The last-used time is written at most once a minute per key, so a busy storefront does not
    turn every read into a write.
    """
    parts = raw_key.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "ms" or not parts[1]:
        return None
    key = ApiKey.objects.select_related("merchant").filter(prefix=parts[1]).first()
    if key is None or not key.is_active or not key.merchant.is_active or not key.matches(raw_key.strip()):
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
