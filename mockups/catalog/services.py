"""Writes for the catalog. A style's settings change only by adding a version."""

from __future__ import annotations

import io
import logging
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from PIL import Image, ImageOps

from mockups.accounts.models import Merchant
from mockups.catalog.models import (
    BaseModel,
    ControlNetModel,
    Lora,
    PreviewStatus,
    Style,
    StylePreview,
    StyleVersion,
    StyleVersionLora,
    lora_upload_to,
)
from mockups.catalog.reference_products import REFERENCE_PRODUCTS, reference_product_png
from mockups.errors import Conflict, ValidationFailed

if TYPE_CHECKING:
    from gpu_runtime.lora import LoraInfo
    from mockups.jobs.models import Job

logger = logging.getLogger(__name__)

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


def style_versions_in_use(*, styles: Iterable[Style]) -> int:
    """How many job variations were made with any version of these styles."""
    from mockups.jobs.models import Variation

    return Variation.objects.filter(style_version__style__in=[style.pk for style in styles]).count()


@transaction.atomic
def style_delete(*, style: Style) -> None:
    """Delete a style no job has used, with its versions and previews; Conflict if any job used it.

    Jobs keep the version they were made with, so a style in use stays (disable it instead). The
    style's pointer to its current version is cleared first: it protects that version from being
    deleted on its own, and here the whole style goes.
    """
    used = style_versions_in_use(styles=[style])
    if used:
        raise Conflict(
            f"{style.name} was used for {used} mockup{'s' if used != 1 else ''}, which keep the style "
            "version they were made with, so it cannot be deleted. Disable it instead."
        )
    Style.objects.filter(pk=style.pk).update(current_version=None)
    style.current_version = None
    style.delete()


# -- LoRA files ---------------------------------------------------------------------------------

# Pickled checkpoints can run code when loaded: refused by name before a byte is read.
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")


def lora_unet_config() -> dict[str, Any] | None:
    """The UNet LoRAs must fit: the tiny engine's when the site runs it, else SDXL base (None)."""
    if settings.MOCKUP_ENGINE == "tiny":
        from gpu_runtime.tiny import tiny_unet_config

        return tiny_unet_config()
    return None


@contextmanager
def _on_disk(upload: File) -> Iterator[Path]:
    """A path holding the upload's bytes: Django's own temporary file, or one written here."""
    temporary = getattr(upload, "temporary_file_path", None)
    if temporary is not None:
        yield Path(temporary())
        return
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as handle:
        upload.seek(0)
        for chunk in upload.chunks():
            handle.write(chunk)
        handle.flush()
        yield Path(handle.name)


def lora_file_inspect(*, upload: File) -> LoraInfo:
    """Check an uploaded LoRA file and describe it; ValidationFailed with a clear message otherwise.

    Refused: a name that is not ``.safetensors`` (pickled ``.ckpt``/``.pt``/``.bin`` files by name),
    a file above ``LORA_MAX_BYTES``, and everything :func:`gpu_runtime.lora.lora_inspect` refuses
    (pickles and text renamed to .safetensors, truncated files, keys or shapes that do not fit the
    UNet). Only the header is parsed; no tensor is loaded.
    """
    from gpu_runtime.errors import InvalidLora
    from gpu_runtime.lora import lora_inspect

    name = Path(upload.name or "").name
    lowered = name.lower()
    if lowered.endswith(PICKLE_EXTENSIONS):
        raise ValidationFailed(
            f"{name} is a pickled checkpoint, which can run code when it is loaded, so it is refused. "
            "Convert it to .safetensors (kohya-ss and diffusers both save that format) and upload that."
        )
    if not lowered.endswith(".safetensors"):
        raise ValidationFailed(
            f"{name or 'This file'} is not a .safetensors file; only .safetensors LoRAs are accepted."
        )
    limit = settings.LORA_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise ValidationFailed(
            f"{name} is {upload.size / 1024**2:.1f} MiB, above the {limit / 1024**2:.0f} MiB limit "
            "for LoRA files."
        )
    unet_config = lora_unet_config()
    try:
        with _on_disk(upload) as path:
            return lora_inspect(path, max_bytes=limit, unet_config=unet_config)
    except InvalidLora as exc:
        # The tiny demo engine checks against its own scaled-down UNet: say so when the fit is the problem.
        hint = (
            " This site runs the tiny demo engine, so only LoRAs made for its tiny UNet fit."
            if unet_config is not None and "UNet" in str(exc)
            else ""
        )
        raise ValidationFailed(f"{name} was refused: {exc}{hint}") from exc
    finally:
        upload.seek(0)


def _store_lora_file(lora: Lora, upload: File, info: LoraInfo) -> str:
    """Save the bytes under a generated name (never the uploaded one) and record what was checked."""
    upload.seek(0)
    lora.file.save(lora_upload_to(lora, ""), upload, save=False)
    lora.sha256, lora.rank, lora.size_bytes = info.sha256, info.rank, info.size_bytes
    return str(lora.file.name)


def lora_create(
    *,
    name: str,
    upload: File,
    trigger_words: str = "",
    preferred_weight: float = 0.8,
    licence_note: str = "",
    info: LoraInfo | None = None,
) -> Lora:
    """Check and store a new LoRA file. ``info`` is the result of :func:`lora_file_inspect` when the
    caller (the admin form) already checked this very upload; otherwise it is checked here."""
    name = name.strip()
    if not name:
        raise ValidationFailed("A LoRA needs a name.")
    if Lora.objects.filter(name=name).exists():
        raise ValidationFailed(f"A LoRA named {name!r} already exists.")
    info = info or lora_file_inspect(upload=upload)
    now = timezone.now()
    lora = Lora(
        name=name,
        trigger_words=trigger_words.strip(),
        preferred_weight=preferred_weight,
        licence_note=licence_note,
        created_at=now,
        updated_at=now,
    )
    stored = _store_lora_file(lora, upload, info)
    try:
        with transaction.atomic():
            lora.save()
    except BaseException:
        default_storage.delete(stored)
        raise
    return lora


def lora_replace_file(*, lora: Lora, upload: File, info: LoraInfo | None = None) -> Lora:
    """Give a LoRA new file contents: new sha256, rank, size and ``updated_at``.

    Takes effect on the next job without restarting any worker: the pipeline hands the engine the
    catalog's sha256 with the path, and a worker whose RAM cache holds the old hash reads the new
    file. The old file is deleted once the change is committed.
    """
    info = info or lora_file_inspect(upload=upload)
    old_name = Lora.objects.filter(pk=lora.pk).values_list("file", flat=True).first() or ""
    stored = _store_lora_file(lora, upload, info)
    lora.updated_at = timezone.now()
    try:
        with transaction.atomic():
            lora.save(update_fields=["file", "sha256", "rank", "size_bytes", "updated_at"])
            if old_name and old_name != stored:
                transaction.on_commit(lambda: default_storage.delete(old_name))
    except BaseException:
        default_storage.delete(stored)
        raise
    return lora


@transaction.atomic
def lora_delete(*, lora: Lora) -> None:
    """Delete a LoRA no style version uses (Conflict otherwise), and its file once that commits."""
    versions = StyleVersionLora.objects.filter(lora=lora).count()
    if versions:
        raise Conflict(
            f"{lora.name} is used by {versions} style version{'s' if versions != 1 else ''}; jobs keep "
            "the version they were made with, so the LoRA stays."
        )
    name = lora.file.name
    lora.delete()
    if name:
        transaction.on_commit(lambda: default_storage.delete(name))


def lora_preload_request(*, loras: Iterable[Lora]) -> int:
    """Ask every GPU worker to read these LoRAs into its RAM cache (done by their heartbeats within a
    few seconds; a worker that starts later loads them too). Returns how many were requested."""
    ids = [lora.pk for lora in loras]
    return Lora.objects.filter(pk__in=ids).update(preload_requested_at=timezone.now())


# -- base models and ControlNets ------------------------------------------------------------------


@transaction.atomic
def base_model_set_default(*, model: BaseModel) -> BaseModel:
    """Make ``model`` the one default base model (workers load it at their next start)."""
    BaseModel.objects.select_for_update().filter(is_default=True).exclude(pk=model.pk).update(
        is_default=False
    )
    BaseModel.objects.filter(pk=model.pk).update(is_default=True)
    model.is_default = True
    return model


@transaction.atomic
def controlnet_set_default(*, model: ControlNetModel) -> ControlNetModel:
    """Make ``model`` the one default ControlNet (workers load it at their next start)."""
    ControlNetModel.objects.select_for_update().filter(is_default=True).exclude(pk=model.pk).update(
        is_default=False
    )
    ControlNetModel.objects.filter(pk=model.pk).update(is_default=True)
    model.is_default = True
    return model


# -- style previews on the reference products ----------------------------------------------------

# The internal merchant that owns preview jobs: no user belongs to it, so no merchant sees them.
PREVIEWS_MERCHANT_PUBLIC_ID = uuid.UUID("5ee5a11e-0000-4000-8000-000000000001")
PREVIEWS_MERCHANT_NAME = "Style previews (internal)"
# Enough for every style on every reference product at once.
PREVIEWS_MAX_ACTIVE_JOBS = 300
# A fixed seed per reference product: a new preview after an edit shows the edit, not new noise.
PREVIEW_SEED = 20240601
THUMBNAIL_SIDE = 384


def previews_merchant() -> Merchant:
    """The internal merchant preview jobs belong to, made on first use."""
    merchant, _ = Merchant.objects.get_or_create(
        public_id=PREVIEWS_MERCHANT_PUBLIC_ID,
        defaults={"name": PREVIEWS_MERCHANT_NAME, "max_active_jobs": PREVIEWS_MAX_ACTIVE_JOBS},
    )
    return merchant


@dataclass
class PreviewRequest:
    """What :func:`style_preview_request` did: the previews it queued and why others were skipped."""

    previews: list[StylePreview] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    jobs: int = 0


def style_preview_request(*, styles: Iterable[Style], user: Any = None) -> PreviewRequest:
    """Render each style's current version on every reference product through the normal job queue.

    One job per reference product holds up to five styles (one variation each), made by
    ``job_create`` for the internal previews merchant with ``JobSource.PREVIEW``. Jobs are queued
    when the transaction commits, after their StylePreview rows exist; when a variation succeeds,
    :func:`style_preview_on_event` stores its thumbnail. A disabled style is skipped: ``job_create``
    only takes styles merchants may use (enable it, or preview it while enabled). A style restricted
    to some merchants gets the internal previews merchant added to its list, which no shop can see.
    """
    from mockups.jobs.models import JobSource
    from mockups.jobs.services import MAX_VARIATIONS, JobOptions, job_create
    from mockups.jobs.uploads import upload_validate

    result = PreviewRequest()
    ready: list[Style] = []
    for style in styles:
        if style.current_version_id is None:
            result.skipped.append(f"{style.name}: it has no version yet.")
        elif not style.is_enabled:
            result.skipped.append(f"{style.name}: it is disabled; enable it to render its previews.")
        else:
            ready.append(style)
    if not ready:
        return result
    with transaction.atomic():
        merchant = previews_merchant()
        for style in ready:
            if style.restricted_to.exists():
                style.restricted_to.add(merchant)
        for product in REFERENCE_PRODUCTS:
            image = upload_validate(reference_product_png(product.key))
            for start in range(0, len(ready), MAX_VARIATIONS):
                chunk = ready[start : start + MAX_VARIATIONS]
                job = job_create(
                    merchant=merchant,
                    image=image,
                    options=JobOptions(
                        styles=[style.slug for style in chunk],
                        seed=PREVIEW_SEED,
                        product_name=product.product_name,
                        source=JobSource.PREVIEW,
                    ),
                    user=user,
                )
                result.jobs += 1
                versions = dict(job.variations.values_list("index", "style_version_id"))
                for index, style in enumerate(chunk):
                    result.previews.append(
                        StylePreview.objects.create(
                            style=style,
                            style_version_id=versions[index],
                            product=product.key,
                            job=job,
                            variation_index=index,
                        )
                    )
    return result


def _thumbnail_jpeg(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        thumbnail = ImageOps.fit(
            image.convert("RGB"), (THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS
        )
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=86, optimize=True)
    return buffer.getvalue()


def style_preview_finish(*, preview: StylePreview, image: bytes) -> StylePreview:
    """Store a finished preview's thumbnail; on the first reference product it becomes the style's
    tile thumbnail unless a newer preview of that style already finished."""
    name = default_storage.save(
        f"style-previews/{preview.style.public_id}/{preview.product}-{uuid.uuid4().hex[:12]}.jpg",
        ContentFile(_thumbnail_jpeg(image)),
    )
    now = timezone.now()
    with transaction.atomic():
        StylePreview.objects.filter(pk=preview.pk).update(
            status=PreviewStatus.SUCCEEDED, image=name, finished_at=now, error=""
        )
        if preview.product == REFERENCE_PRODUCTS[0].key:
            newer = StylePreview.objects.filter(
                style_id=preview.style_id,
                product=preview.product,
                status=PreviewStatus.SUCCEEDED,
                created_at__gt=preview.created_at,
            ).exists()
            if not newer:
                Style.objects.filter(pk=preview.style_id).update(thumbnail=name)
    preview.refresh_from_db()
    return preview


def style_preview_fail(*, previews: Iterable[StylePreview], error: str) -> int:
    ids = [preview.pk for preview in previews]
    return StylePreview.objects.filter(pk__in=ids, status=PreviewStatus.PENDING).update(
        status=PreviewStatus.FAILED, error=error[:2000], finished_at=timezone.now()
    )


def style_preview_on_event(job: Job, message: dict[str, Any]) -> None:
    """Job event listener (``mockups.jobs.events.event_listener_add``): keeps StylePreview rows in
    step with their preview jobs. Runs after commit in whichever process ran the job; never raises,
    so a preview problem cannot fail the job that produced it."""
    from mockups.jobs.models import JobSource, Variation

    if job.source != JobSource.PREVIEW:
        return
    try:
        kind = message.get("type")
        if kind == "variation.succeeded":
            index = int(message["index"])
            variation = Variation.objects.filter(job_id=job.pk, index=index).only("image").first()
            if variation is None or not variation.image:
                return
            with default_storage.open(str(variation.image.name), "rb") as handle:
                data = handle.read()
            for preview in StylePreview.objects.filter(job_id=job.pk, variation_index=index).select_related(
                "style"
            ):
                style_preview_finish(preview=preview, image=data)
        elif kind == "variation.failed":
            style_preview_fail(
                previews=StylePreview.objects.filter(job_id=job.pk, variation_index=int(message["index"])),
                error=str(message.get("error", "")),
            )
        elif kind == "job.status" and message.get("status") in ("failed", "canceled"):
            style_preview_fail(
                previews=StylePreview.objects.filter(job_id=job.pk),
                error=str(message.get("error") or f"The preview job was {message.get('status')}."),
            )
    except Exception:
        logger.exception("could not record the preview of job %s (%s)", job.public_id, message.get("type"))
