"""Jobs and files as the API shows them: the native mockup object and Replicate's prediction object.

Every URL in them is absolute: ``API_BASE_URL`` when set, else the origin of the request (or,
for webhooks built by a worker, the origin of the request that created the job). Image URLs are
signed and expire (``MEDIA_URL_MAX_AGE``), so a storefront can put them in an ``<img>`` as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from mockups.api.model_card import MODEL_REF, model_version_id
from mockups.api.models import JobApiContext, UploadedFile
from mockups.jobs.media import media_url
from mockups.jobs.models import Job, JobSource, JobStatus, Variation, VariationStatus
from mockups.jobs.services import QueueView, queue_view
from mockups.jobs.snapshots import job_cost_per_image

PREDICTION_STATUS = {
    JobStatus.QUEUED: "starting",
    JobStatus.PREPARING: "processing",
    JobStatus.GENERATING: "processing",
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "canceled",
}
BAR_WIDTH = 10
BAR_BLOCKS = " ▏▎▍▌▋▊▉█"


def request_base(request: HttpRequest) -> str:
    return str(settings.API_BASE_URL or request.build_absolute_uri("/").rstrip("/"))


def job_context(job: Job) -> JobApiContext | None:
    try:
        return job.api_context
    except JobApiContext.DoesNotExist:
        return None


def job_base(job: Job) -> str:
    """The origin for URLs in a representation built away from any request (webhooks)."""
    context = job_context(job)
    return str(settings.API_BASE_URL or (context.base_url if context else ""))


def _media(name: str | None, base: str) -> str | None:
    return media_url(name, absolute_base=base) if name else None


def prediction_id(job: Job) -> str:
    return job.public_id.hex


# -- native ----------------------------------------------------------------------------------


def _variation(variation: Variation, base: str) -> dict[str, Any]:
    style = variation.style_version.style
    return {
        "index": variation.index,
        "status": variation.status,
        "style": style.slug,
        "style_name": style.name,
        "style_version": variation.style_version.number,
        "seed": variation.seed,
        "step": variation.step,
        "steps": variation.steps,
        "image": _media(variation.image.name, base),
        "format": variation.image_format or None,
        "width": variation.width,
        "height": variation.height,
        "fidelity_max_delta": variation.fidelity_max_delta,
        "gpu_seconds": round(variation.gpu_seconds, 3),
        "error": variation.error or None,
    }


def mockup_representation(job: Job, *, base: str, queue: QueueView | None = None) -> dict[str, Any]:
    """One job as the native API shows it; a list passes one ``queue`` (:func:`queue_view`) for all."""
    queue = queue or queue_view(jobs=[job])
    mockup_path = reverse("api:mockup_get", args=[job.public_id])
    params = job.parameters or {}
    return {
        "id": str(job.public_id),
        "status": job.status,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "product_name": job.product_name,
        "queue_position": queue.position(job),
        "eta_seconds": queue.eta_seconds(job),
        "original": _media(job.original.name, base),
        "cutout": _media(job.cutout.name, base),
        "mask": _media(job.mask.name, base),
        "cutout_method": job.cutout_method or None,
        "cutout_confidence": job.cutout_confidence,
        "parameters": {
            "seed": params.get("seed"),
            "steps": params.get("steps"),
            "guidance": params.get("guidance"),
            "negative_prompt": params.get("negative_prompt"),
            "output_preset": params.get("output_preset"),
            "output_format": params.get("output_format", "png"),
        },
        "variations": [_variation(v, base) for v in job.variations.all()],
        "gpu_seconds": round(job.gpu_seconds, 3),
        "cost_per_image": job_cost_per_image(job),
        "gpu_hourly_price": settings.GPU_HOURLY_PRICE,
        "error": {"code": job.error_code or "failed", "message": job.error} if job.error else None,
        "webhook_url": job.webhook_url or None,
        "webhook_events": list(job.webhook_events or []),
        "urls": {
            "get": base + mockup_path,
            "cancel": base + reverse("api:mockup_cancel", args=[job.public_id]),
            "web": base + reverse("web:job", args=[job.public_id]),
        },
    }


# -- Replicate ---------------------------------------------------------------------------------


def _bar(step: int, steps: int) -> str:
    """A tqdm-style line, ``' 40%|████      | 12/30'``, which Replicate's clients parse for progress."""
    fraction = min(max(step / steps, 0.0), 1.0)
    eighths = int(fraction * BAR_WIDTH * 8)
    full, partial = divmod(eighths, 8)
    bar = "█" * full + (BAR_BLOCKS[partial] if full < BAR_WIDTH else "")
    return f"{int(fraction * 100):3d}%|{bar.ljust(BAR_WIDTH)}| {step}/{steps}"


def prediction_logs(job: Job) -> str:
    """What the job has done so far, as a log with one progress bar per variation and one overall."""
    variations = list(job.variations.all())
    lines: list[str] = []
    if job.started_at is None and job.status == JobStatus.QUEUED:
        lines.append("Waiting in the queue")
    if job.started_at is not None:
        lines.append("Removing the background")
    if job.prepared_at is not None:
        confidence = f", confidence {job.cutout_confidence:.2f}" if job.cutout_confidence is not None else ""
        lines.append(f"Background removed ({job.cutout_method or 'cutout'}{confidence})")
    started = [v for v in variations if v.status != VariationStatus.QUEUED or v.steps]
    for variation in started:
        style = variation.style_version.style.slug
        lines.append(f"Variation {variation.index + 1}/{len(variations)}: {style}, seed {variation.seed}")
        if variation.steps:
            lines.append(_bar(variation.step, variation.steps))
        if variation.status == VariationStatus.SUCCEEDED:
            lines.append(
                f"Variation {variation.index + 1} done (fidelity max delta {variation.fidelity_max_delta})"
            )
        elif variation.status == VariationStatus.FAILED and variation.error:
            lines.append(f"Variation {variation.index + 1} failed: {variation.error}")
    total = sum(v.steps for v in started)
    if total and len(started) > 1:
        lines.append("Overall")
        lines.append(_bar(sum(min(v.step, v.steps) for v in started), total))
    if job.status == JobStatus.SUCCEEDED:
        lines.append(f"Succeeded: {len(variations)} images, {job.gpu_seconds:.2f} GPU seconds")
    elif job.status == JobStatus.FAILED:
        lines.append(f"Failed: {job.error}")
    elif job.status == JobStatus.CANCELED:
        lines.append("Canceled")
    return "\n".join(lines) + "\n"


def prediction_output(job: Job, *, base: str) -> list[str] | None:
    """Image URLs in the order the variations finished, so the list only ever grows while it runs."""
    done = [v for v in job.variations.all() if v.status == VariationStatus.SUCCEEDED and v.image.name]
    if not done:
        return None
    done.sort(key=lambda v: (v.finished_at or job.created_at, v.index))
    return [media_url(v.image.name, absolute_base=base) for v in done]


def prediction_input(job: Job, *, base: str) -> dict[str, Any]:
    context = job_context(job)
    if context is not None and context.input:
        return dict(context.input)
    variations = list(job.variations.all())
    echo: dict[str, Any] = {
        "image": _media(job.original.name, base),
        "styles": [v.style_version.style.slug for v in variations],
        "num_outputs": len(variations),
    }
    echo.update(job.parameters or {})
    if job.product_name:
        echo["product_name"] = job.product_name
    return echo


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return round(max(((end or timezone.now()) - start).total_seconds(), 0.0), 3)


def prediction_representation(job: Job, *, base: str) -> dict[str, Any]:
    variations = list(job.variations.all())
    metrics: dict[str, float | int] = {
        "gpu_seconds": round(job.gpu_seconds, 3),
        "cost_per_image": job_cost_per_image(job),
        "image_count": sum(1 for v in variations if v.status == VariationStatus.SUCCEEDED),
    }
    predict_time = _seconds(job.started_at, job.finished_at)
    if predict_time is not None:
        metrics["predict_time"] = predict_time
    if job.is_final and job.finished_at:
        metrics["total_time"] = _seconds(job.created_at, job.finished_at) or 0.0
    pid = prediction_id(job)
    return {
        "id": pid,
        "model": MODEL_REF,
        "version": model_version_id(),
        "input": prediction_input(job, base=base),
        "output": prediction_output(job, base=base),
        "logs": prediction_logs(job),
        "error": (job.error or "The prediction failed.") if job.status == JobStatus.FAILED else None,
        "status": PREDICTION_STATUS[JobStatus(job.status)],
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.finished_at if job.is_final else None,
        "urls": {
            "get": base + reverse("api:prediction_get", args=[pid]),
            "cancel": base + reverse("api:prediction_cancel", args=[pid]),
            "web": base + reverse("web:job", args=[job.public_id]),
        },
        "metrics": metrics,
        "source": "api",
        "data_removed": False,
        "webhook": job.webhook_url or None,
        "webhook_events_filter": list(job.webhook_events) if job.webhook_url else None,
    }


def job_representation_for_webhook(job: Job) -> dict[str, Any]:
    """The body of a webhook: the object the job's creator knows (prediction or mockup)."""
    base = job_base(job)
    if job.source == JobSource.REPLICATE:
        return prediction_representation(job, base=base)
    return mockup_representation(job, base=base)


# -- files -------------------------------------------------------------------------------------


def file_representation(upload: UploadedFile, *, base: str) -> dict[str, Any]:
    return {
        "id": upload.public_id.hex,
        "name": upload.name,
        "content_type": upload.content_type,
        "size": upload.size,
        "etag": upload.md5,
        "checksums": {"sha256": upload.sha256, "md5": upload.md5},
        "metadata": upload.metadata or {},
        "created_at": upload.created_at,
        "expires_at": upload.expires_at,
        "urls": {"get": base + reverse("api:file_get", args=[upload.public_id.hex])},
    }
