"""Fixtures for the operators' admin tests: a catalog with LoRAs, many jobs, the real queue and engine."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from mockups.catalog.models import Style
from mockups.jobs.models import Job, JobStatus, Variation
from tests.factories import make_merchant, png_bytes


@pytest.fixture(autouse=True)
def _offline_and_quick(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The admin user's password is hashed once per test; a million PBKDF2 rounds is not the point here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def tiny_lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loras")


def tiny_lora_file(folder: Path, *, seed: int, rank: int = 4, scale: float = 1.0) -> Path:
    """A valid LoRA for the tiny engine's UNet, built by the engine's own builder."""
    from gpu_runtime.tiny import build_tiny_lora, tiny_unet_config

    path = folder / f"tiny-r{rank}-s{seed}-x{scale:g}.safetensors"
    if not path.exists():
        build_tiny_lora(path, tiny_unet_config(), rank=rank, seed=seed, scale=scale)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_jobs(count: int, *, styles: list[Style], merchants: int = 3, with_images: bool = True) -> list[Job]:
    """``count`` finished jobs spread over a few merchants, each with a variation per style.

    Rows are bulk-inserted and share one stored original and one stored result image, so a few
    hundred jobs take a moment, not minutes.
    """
    shops = [make_merchant() for _ in range(merchants)]
    data = png_bytes()
    original = default_storage.save("jobs/test/original.png", ContentFile(data))
    result = default_storage.save("jobs/test/variation.png", ContentFile(data)) if with_images else ""
    now = timezone.now()
    jobs = Job.objects.bulk_create(
        Job(
            merchant=shops[n % merchants],
            status=JobStatus.SUCCEEDED,
            original=original,
            original_width=96,
            original_height=96,
            original_sha256=hashlib.sha256(data).hexdigest(),
            created_at=now,
            finished_at=now,
        )
        for n in range(count)
    )
    if not jobs or jobs[0].pk is None:  # databases that do not return ids from bulk_create
        jobs = list(Job.objects.order_by("-id")[:count])
    Variation.objects.bulk_create(
        Variation(
            job=job,
            index=index,
            style_version=style.current_version,
            status="succeeded",
            seed=random.randrange(2**31),
            image=result,
        )
        for job in jobs
        for index, style in enumerate(styles)
    )
    return jobs


def admin_form_data(response: Any) -> dict[str, Any]:
    """The values a browser would post back from an admin change form (initial values included)."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None:
            continue
        if isinstance(value, list | tuple):
            data[name] = [str(item) for item in value]
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        else:
            data[name] = str(value) if not hasattr(field, "queryset") else str(getattr(value, "pk", value))
    for formset in response.context.get("inline_admin_formsets", []):
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management[name].value()
    return data
