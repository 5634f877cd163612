"""The one door every upload goes through (browser, REST API, Replicate API): limits from settings."""

from __future__ import annotations

from typing import BinaryIO

from django.conf import settings

from mockups.jobs.intake import IntakeLimits, ValidatedImage, image_validate


def intake_limits() -> IntakeLimits:
    return IntakeLimits(
        max_bytes=settings.UPLOAD_MAX_BYTES,
        max_pixels=settings.UPLOAD_MAX_PIXELS,
        max_side=settings.UPLOAD_MAX_SIDE,
        min_side=settings.UPLOAD_MIN_SIDE,
    )


def upload_validate(data: bytes | BinaryIO) -> ValidatedImage:
    """Validate and normalise an uploaded photo.

    Raises ImageRejected (a 4xx DomainError) with a message a merchant understands.
    """
    return image_validate(data=data, limits=intake_limits())
