"""A job as plain data, for the browser (JSON snapshot on every (re)connect) and the zip download."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from mockups.jobs.media import media_url
from mockups.jobs.models import Job
from mockups.jobs.services import queue_view


def job_cost_per_image(job: Job) -> float:
    images = sum(1 for v in job.variations.all() if v.image)
    return round(job.gpu_seconds / 3600 * settings.GPU_HOURLY_PRICE / images, 5) if images else 0.0


def job_snapshot(job: Job) -> dict[str, Any]:
    variations = list(job.variations.all())
    queue = queue_view(jobs=[job])
    return {
        "id": str(job.public_id),
        "status": job.status,
        "attempts": job.attempts,
        "seq": job.event_seq,
        "position": queue.position(job),
        "eta_seconds": queue.eta_seconds(job),
        "product_name": job.product_name,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        "error_code": job.error_code,
        "original": media_url(job.original.name),
        "cutout": media_url(job.cutout.name) if job.cutout else "",
        "mask": media_url(job.mask.name) if job.mask else "",
        "cutout_method": job.cutout_method,
        "cutout_confidence": job.cutout_confidence,
        "gpu_seconds": round(job.gpu_seconds, 3),
        "cost_per_image": job_cost_per_image(job),
        "variations": [
            {
                "index": v.index,
                "status": v.status,
                "style": v.style_version.style.name,
                "style_version": v.style_version.number,
                "seed": v.seed,
                "step": v.step,
                "steps": v.steps,
                "image": media_url(v.image.name) if v.image else "",
                "format": v.image_format,
                "width": v.width,
                "height": v.height,
                "fidelity_max_delta": v.fidelity_max_delta,
                "gpu_seconds": round(v.gpu_seconds, 3),
                "error": v.error,
            }
            for v in variations
        ],
    }
