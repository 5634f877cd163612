"""What each GPU worker process reports about itself, written by its heartbeat thread."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class GpuWorker(models.Model):
    """One worker process holding a resident engine, as last reported by its heartbeat.

    ``name`` is ``<hostname>:<pid>``, so a restarted process takes over its own row. ``health`` is
    the engine's own report (device, models resident, LoRAs cached...); ``loras`` is the list of
    ``{"sha256", "name"}`` LoRAs in its RAM cache, kept apart so the admin can match it quickly.
    ``preload_done_at`` is the newest LoRA preload request this process has carried out.
    """

    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    health = models.JSONField(default=dict, blank=True)
    loras = models.JSONField(default=list, blank=True)
    preload_done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "GPU worker"

    def __str__(self) -> str:
        return self.name

    def lora_hashes(self) -> set[str]:
        return {str(entry.get("sha256", "")) for entry in self.loras if isinstance(entry, dict)}
