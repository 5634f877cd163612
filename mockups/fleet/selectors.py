"""Reads about the GPU workers, for the admin's health page and the LoRA list."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from mockups.fleet.models import GpuWorker


def gpu_workers_seen(*, within_s: int | None = None) -> list[GpuWorker]:
    """Workers whose heartbeat arrived in the last ``within_s`` seconds (FLEET_WORKER_STALE_S by default)."""
    within = settings.FLEET_WORKER_STALE_S if within_s is None else within_s
    since = timezone.now() - timedelta(seconds=within)
    return list(GpuWorker.objects.filter(last_seen_at__gte=since).order_by("name"))


def gpu_workers_by_lora(*, workers: list[GpuWorker]) -> dict[str, list[str]]:
    """sha256 of each LoRA held in a worker's RAM cache -> names of the workers holding it."""
    holders: dict[str, list[str]] = {}
    for worker in workers:
        for sha in sorted(worker.lora_hashes()):
            holders.setdefault(sha, []).append(worker.name)
    return holders


def gpu_workers_by_model(*, workers: list[GpuWorker]) -> dict[str, list[str]]:
    """Source (hub id or folder) of each model a worker reports resident -> names of those workers."""
    holders: dict[str, list[str]] = {}
    for worker in workers:
        for source in worker_models_resident(worker):
            holders.setdefault(source, []).append(worker.name)
    return holders


def worker_models_resident(worker: GpuWorker) -> list[str]:
    """The sources (hub id or folder) of the models a worker's engine has loaded, as its heartbeat
    recorded them in ``health["models_resident"]``."""
    health = worker.health if isinstance(worker.health, dict) else {}
    models = health.get("models_resident")
    return [str(source) for source in models if source] if isinstance(models, list) else []
