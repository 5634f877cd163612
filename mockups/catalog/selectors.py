"""Reads for the catalog, scoped to the merchant who may use it."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from mockups.accounts.models import Merchant
from mockups.catalog.models import BaseModel, ControlNetModel, Style
from mockups.errors import NotFound


def style_list_for_merchant(*, merchant: Merchant) -> QuerySet[Style]:
    """Enabled styles with a version that this merchant may use, in the operators' order."""
    return (
        Style.objects.filter(is_enabled=True, current_version__isnull=False)
        .filter(Q(restricted_to__isnull=True) | Q(restricted_to=merchant))
        .select_related("current_version")
        .distinct()
        .order_by("position", "name")
    )


def style_get_for_merchant(*, merchant: Merchant, key: str) -> Style:
    """A style by slug or public id that the merchant may use; NotFound otherwise (restricted too)."""
    styles = style_list_for_merchant(merchant=merchant)
    try:
        style = styles.filter(public_id=uuid.UUID(str(key))).first()
    except ValueError:
        style = styles.filter(slug=str(key)).first()
    if style is None:
        raise NotFound(f"Unknown style {key!r}.", code="unknown_style")
    return style


def base_model_default() -> BaseModel | None:
    return BaseModel.objects.filter(is_default=True).first()


def controlnet_default() -> ControlNetModel | None:
    return ControlNetModel.objects.filter(is_default=True).first()
