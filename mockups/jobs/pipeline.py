"""What the queue workers do for a job: prepare on the CPU queue, generate on the GPU queue.

Each stage claims the job (lease + attempt count), does its work and records the result
through the services. Permanent errors end the job with a message for the merchant; transient
ones propagate so the broker retries them with backoff after the lease is released.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from django.core.files.storage import default_storage
from PIL import Image

from mockups.errors import DomainError
from mockups.jobs import runtime
from mockups.jobs.events import event_publish
from mockups.jobs.models import Job, Variation, VariationStatus
from mockups.jobs.services import (
    Claim,
    job_cancel_requested,
    job_claim,
    job_finish,
    job_mark_canceled,
    job_mark_failed,
    job_mark_prepared,
    variation_mark_started,
    variation_mark_succeeded,
)

logger = logging.getLogger(__name__)

# Progress is streamed at most this often per job, and the lease renewed at most this often.
PROGRESS_INTERVAL_S = 0.1
LEASE_RENEW_INTERVAL_S = 2.0
CANCEL_POLL_INTERVAL_S = 0.25


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _load_image(name: str | None) -> Image.Image:
    if not name:
        raise DomainError("A stored image of this job is missing.", code="image_missing")
    with default_storage.open(name, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return image


def _run_claimed(claim: Claim, work: Callable[[Claim], None]) -> None:
    try:
        work(claim)
    except DomainError as exc:
        if exc.retryable:
            claim.release()
            raise
        job_mark_failed(job=claim.job, code=exc.code, message=exc.message)
    except BaseException:
        claim.release()  # let the retry (or another worker) take it at once
        raise


def prepare(job_id: str) -> None:
    claim = job_claim(public_id=job_id, stage="prepare")
    if claim is not None:
        _run_claimed(claim, _prepare)


def _prepare(claim: Claim) -> None:
    from gpu_runtime.control import canny_control_image
    from gpu_runtime.cutout import CutoutError

    original = _load_image(claim.job.original.name)
    try:
        result = runtime.background_remover().remove_background(original)
    except CutoutError as exc:  # an operator must install the model: retrying cannot help
        raise DomainError(f"Background removal is not available: {exc}", code="cutout_unavailable") from exc
    if int(np.asarray(result.mask).max()) < 255:
        raise DomainError(
            "We could not find a product in this photo. Use a photo of one product on a plain background.",
            code="no_product",
            status_code=422,
        )
    control = canny_control_image(result.rgba)
    job_mark_prepared(
        claim=claim,
        cutout=_png(result.rgba),
        mask=_png(result.mask),
        control=_png(control),
        method=result.method,
        confidence=float(result.confidence),
    )


def generate(job_id: str) -> None:
    claim = job_claim(public_id=job_id, stage="generate")
    if claim is not None:
        _run_claimed(claim, _generate)


def _variation_spec(variation: Variation, job: Job) -> Any:
    from gpu_runtime.types import LoraSpec, VariationSpec

    version = variation.style_version
    params = job.parameters
    loras = tuple(
        LoraSpec(name=link.lora.name, path=link.lora.file.path, sha256=link.lora.sha256, weight=link.weight)
        for link in version.lora_links.all()
    )
    negative = params.get("negative_prompt")
    return VariationSpec(
        index=variation.index,
        seed=variation.seed,
        prompt=variation.prompt or version.render_prompt(job.product_name or "product"),
        negative_prompt=negative if negative is not None else version.negative_prompt,
        loras=loras,
        backdrop=version.backdrop,  # type: ignore[arg-type]  # choices in the model match the Literal
        studio_fill=version.studio_fill,  # type: ignore[arg-type]
        studio_colors=(version.studio_color, version.studio_color_2),
        shadow=version.shadow,  # type: ignore[arg-type]
        controlnet_scale=version.controlnet_scale,
        steps=params.get("steps") or version.steps,
        guidance=params.get("guidance", version.guidance),
        scheduler=version.scheduler,
        output_preset=params.get("output_preset") or version.output_preset,
        output_format=params.get("output_format", "png"),
    )


def _generate(claim: Claim) -> None:
    from gpu_runtime.errors import EngineError, GenerationCanceled
    from gpu_runtime.types import GenerateRequest, StepEvent, VariationResult

    job = claim.job
    pending = list(
        Variation.objects.filter(job=job)
        .exclude(status=VariationStatus.SUCCEEDED)
        .select_related("style_version")
        .prefetch_related("style_version__lora_links__lora")
        .order_by("index")
    )
    if not pending:
        job_finish(claim=claim)
        return
    generations = {v.index: v.generation for v in pending}
    specs = [_variation_spec(v, job) for v in pending]
    for variation, spec in zip(pending, specs, strict=True):
        Variation.objects.filter(pk=variation.pk).update(
            steps=spec.steps if spec.backdrop == "generated" else 0
        )
    variation_mark_started(claim=claim, indices=list(generations))
    product = _load_image(job.cutout.name).convert("RGBA")

    last = {"progress": 0.0, "lease": time.monotonic(), "cancel": 0.0}
    canceled = {"value": False}

    def on_event(event: Any) -> None:
        now = time.monotonic()
        if now - last["lease"] > LEASE_RENEW_INTERVAL_S:
            last["lease"] = now
            if not claim.renew():
                canceled["value"] = True
        if isinstance(event, StepEvent):
            if event.step == event.steps or now - last["progress"] >= PROGRESS_INTERVAL_S:
                last["progress"] = now
                Variation.objects.filter(job=job, index__in=event.indices).update(step=event.step)
                for index in event.indices:
                    event_publish(
                        job=job, type="variation.progress", index=index, step=event.step, steps=event.steps
                    )
        elif isinstance(event, VariationResult):
            variation_mark_succeeded(
                claim=claim,
                index=event.index,
                generation=generations[event.index],
                data=event.data,
                fmt=event.fmt,
                width=event.width,
                height=event.height,
                fidelity_max_delta=event.fidelity_max_delta,
                gpu_seconds=event.gpu_seconds,
            )

    def should_cancel() -> bool:
        now = time.monotonic()
        if now - last["cancel"] >= CANCEL_POLL_INTERVAL_S:
            last["cancel"] = now
            canceled["value"] = canceled["value"] or job_cancel_requested(job=job)
        return canceled["value"]

    try:
        runtime.engine().generate(
            GenerateRequest(product_rgba=product, variations=specs),
            on_event=on_event,
            should_cancel=should_cancel,
        )
    except GenerationCanceled:
        job_mark_canceled(job=job)
        return
    except EngineError as exc:
        job_mark_failed(
            job=job, code="generation_failed", message=f"The mockups could not be generated: {exc}"
        )
        return
    job_finish(claim=claim)
