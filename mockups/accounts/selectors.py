"""Reads for merchants and API keys. Every function takes the merchant it is scoped to."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from mockups.accounts.models import ApiKey, Merchant
from mockups.errors import NotFound


def merchant_for_user(*, user: Any) -> Merchant:
    """The merchant a logged-in user works for; NotFound for anyone else (including staff without one)."""
    if not user.is_authenticated:
        raise NotFound("Not logged in as a merchant.")
    merchant = Merchant.objects.filter(memberships__user=user, is_active=True).first()
    if merchant is None:
        raise NotFound("This account does not belong to a merchant.")
    return merchant


def api_key_list(*, merchant: Merchant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(merchant=merchant).order_by("-created_at")
