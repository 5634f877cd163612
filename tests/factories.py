"""Small builders for test objects; each returns saved rows with sensible defaults."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image

from mockups.accounts.models import Membership, Merchant
from mockups.catalog.models import Style
from mockups.catalog.services import style_create
from mockups.jobs.models import Job, Variation

_counter = itertools.count(1)


def make_user(
    *, merchant: Merchant | None, role: str = "member", password: str = "correct horse battery"
) -> Any:
    n = next(_counter)
    user = get_user_model().objects.create_user(
        username=f"user{n}@example.com", email=f"user{n}@example.com", password=password
    )
    if merchant is not None:
        Membership.objects.create(user=user, merchant=merchant, role=role)
    return user


def make_merchant(name: str | None = None) -> Merchant:
    return Merchant.objects.create(name=name or f"Shop {next(_counter)}")


def make_style(**fields: Any) -> Style:
    n = next(_counter)
    fields.setdefault("prompt_template", "a photo of {product} on a table")
    return style_create(
        slug=fields.pop("slug", f"style-{n}"), name=fields.pop("name", f"Style {n}"), **fields
    )


def png_bytes(size: tuple[int, int] = (96, 96), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_job(
    *, merchant: Merchant, styles: list[Style] | None = None, status: str = "queued", **fields: Any
) -> Job:
    data = png_bytes()
    job = Job(
        merchant=merchant,
        status=status,
        original_width=96,
        original_height=96,
        original_sha256=hashlib.sha256(data).hexdigest(),
        **fields,
    )
    job.original.save("original.png", ContentFile(data), save=False)
    job.save()
    for index, style in enumerate(styles or []):
        assert style.current_version is not None
        Variation.objects.create(
            job=job, index=index, style_version=style.current_version, seed=random.randrange(2**31)
        )
    return job
