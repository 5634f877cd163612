"""Writes for the catalog. A style's settings change only by adding a version."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from mockups.catalog.models import Lora, Style, StyleVersion, StyleVersionLora
from mockups.errors import ValidationFailed

VERSION_FIELDS = (
    "prompt_template",
    "negative_prompt",
    "backdrop",
    "studio_fill",
    "studio_color",
    "studio_color_2",
    "controlnet_scale",
    "steps",
    "guidance",
    "scheduler",
    "shadow",
    "output_preset",
)


def style_version_validate(fields: dict[str, Any]) -> None:
    template = fields.get("prompt_template", "")
    if "{product}" not in template:
        raise ValidationFailed("The prompt template must contain {product}, where the product's name goes.")
    steps = int(fields.get("steps", 30))
    if not 1 <= steps <= 100:
        raise ValidationFailed("Steps must be between 1 and 100.")
    guidance = float(fields.get("guidance", 6.0))
    if not 0.0 <= guidance <= 30.0:
        raise ValidationFailed("Guidance must be between 0 and 30.")
    scale = float(fields.get("controlnet_scale", 0.7))
    if not 0.0 <= scale <= 2.0:
        raise ValidationFailed("ControlNet scale must be between 0 and 2.")


@transaction.atomic
def style_version_create(
    *, style: Style, loras: list[tuple[Lora, float]] | None = None, **fields: Any
) -> StyleVersion:
    """Add a version to a style and make it current. Jobs keep the version they were made with.

    Fields not given are copied from the current version, so an edit only names what changes.
    The style row is locked so two operators saving at once get consecutive numbers.
    """
    style = Style.objects.select_for_update().get(pk=style.pk)
    current = style.current_version
    values: dict[str, Any] = {}
    for name in VERSION_FIELDS:
        if name in fields:
            values[name] = fields.pop(name)
        elif current is not None:
            values[name] = getattr(current, name)
    if fields:
        raise ValidationFailed(f"Unknown style fields: {', '.join(sorted(fields))}.")
    style_version_validate(values)
    number = (style.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = StyleVersion.objects.create(style=style, number=number, **values)
    if loras is None and current is not None:
        loras = [(link.lora, link.weight) for link in current.lora_links.select_related("lora")]
    for lora, weight in loras or []:
        StyleVersionLora.objects.create(style_version=version, lora=lora, weight=weight)
    style.current_version = version
    style.save(update_fields=["current_version"])
    return version


@transaction.atomic
def style_create(
    *,
    slug: str,
    name: str,
    description: str = "",
    position: int = 100,
    loras: list[tuple[Lora, float]] | None = None,
    **fields: Any,
) -> Style:
    style = Style.objects.create(slug=slug, name=name, description=description, position=position)
    style_version_create(style=style, loras=loras or [], **fields)
    style.refresh_from_db()
    return style
