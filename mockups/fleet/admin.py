"""The GPU workers in the admin: a read-only list and the health page (``admin:health``)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from mockups.admin_tools import ViewOnly
from mockups.catalog.models import BaseModel, ControlNetModel, Lora
from mockups.fleet.models import GpuWorker
from mockups.fleet.selectors import gpu_workers_seen, worker_models_resident


@admin.register(GpuWorker)
class GpuWorkerAdmin(ViewOnly, admin.ModelAdmin):
    """What each worker process last reported. Rows of dead workers may be deleted; they also go away
    by themselves a day after their last heartbeat."""

    list_display = ["name", "alive", "queues_list", "models", "lora_count", "last_seen_at", "started_at"]
    search_fields = ["name", "hostname"]
    ordering = ["name"]
    readonly_fields = [
        "name",
        "hostname",
        "pid",
        "queues",
        "started_at",
        "last_seen_at",
        "preload_done_at",
        "health",
        "loras",
    ]

    @admin.display(boolean=True, description="alive")
    def alive(self, obj: GpuWorker) -> bool:
        return obj.last_seen_at >= timezone.now() - timedelta(seconds=settings.FLEET_WORKER_STALE_S)

    @admin.display(description="queues")
    def queues_list(self, obj: GpuWorker) -> str:
        return ", ".join(str(queue) for queue in obj.queues) or "—"

    @admin.display(description="models resident")
    def models(self, obj: GpuWorker) -> str:
        return ", ".join(worker_models_resident(obj)) or "—"

    @admin.display(description="LoRAs cached")
    def lora_count(self, obj: GpuWorker) -> int:
        return len(obj.loras)

    def get_urls(self) -> list[URLPattern]:
        health = path("health/", self.admin_site.admin_view(self.health_view), name="health")
        return [health, *super().get_urls()]

    def health_view(self, request: HttpRequest) -> HttpResponse:
        """Which worker is alive, what each has resident, and which catalog models and LoRAs are where."""
        live = gpu_workers_seen()
        live_names = {worker.name for worker in live}
        stale = [
            worker
            for worker in GpuWorker.objects.order_by("-last_seen_at")[:50]
            if worker.name not in live_names
        ]
        resident = {worker.name: set(worker_models_resident(worker)) for worker in live}
        cached = {worker.name: worker.lora_hashes() for worker in live}
        registered: list[tuple[str, str, str, bool]] = [
            ("Base model", model.name, model.source, model.is_default) for model in BaseModel.objects.all()
        ] + [
            ("ControlNet", model.name, model.source, model.is_default)
            for model in ControlNetModel.objects.all()
        ]
        model_rows = [
            {
                "kind": kind,
                "name": name,
                "source": source,
                "is_default": is_default,
                "cells": [source in resident[worker.name] for worker in live],
            }
            for kind, name, source, is_default in registered
        ]
        lora_rows = [
            {"lora": lora, "cells": [lora.sha256 in cached[worker.name] for worker in live]}
            for lora in Lora.objects.order_by("name")
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "GPU fleet health",
            "opts": self.model._meta,
            "live": [
                {"worker": worker, "models": sorted(resident[worker.name]), "health": worker.health}
                for worker in live
            ],
            "stale": stale,
            "model_rows": model_rows,
            "lora_rows": lora_rows,
            "stale_after_s": settings.FLEET_WORKER_STALE_S,
            "engine_kind": settings.MOCKUP_ENGINE,
        }
        return TemplateResponse(request, "admin/fleet/health.html", context)
