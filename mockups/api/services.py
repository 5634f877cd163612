"""Writes for the API: uploaded files, photo inputs, job creation with its API context, deadlines."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from mockups.accounts.models import Merchant
from mockups.api.models import JobApiContext, UploadedFile
from mockups.api.problems import FieldsInvalid
from mockups.api.selectors import uploaded_file_get
from mockups.api.webhooks import webhook_target_check
from mockups.catalog.selectors import style_list_for_merchant
from mockups.errors import NotFound
from mockups.jobs.intake import ImageRejected, ValidatedImage
from mockups.jobs.models import Job
from mockups.jobs.services import MAX_VARIATIONS, JobOptions, job_cancel, job_create
from mockups.jobs.uploads import upload_validate

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_FILE_PATH = re.compile(r"^/v1/files/(?P<id>[0-9a-fA-F-]{32,36})(?:/download)?/?$")
_DATA_URI = re.compile(
    r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,"
)


def _too_large() -> ImageRejected:
    return ImageRejected(
        f"This photo is larger than {settings.UPLOAD_MAX_BYTES // (1024 * 1024)} MB; upload a smaller one.",
        code="image_file_too_large",
        status_code=413,
    )


# -- uploaded files ----------------------------------------------------------------------------


def uploaded_file_create(
    *, merchant: Merchant, data: bytes, filename: str, metadata: dict[str, Any] | None = None
) -> UploadedFile:
    """Keep a photo for later use as an input. It must pass intake now, so a bad file fails early.

    The bytes are stored as received; the content type is what the content is, not what was declared.
    """
    if len(data) > settings.UPLOAD_MAX_BYTES:
        raise _too_large()
    validated = upload_validate(data)
    upload = UploadedFile(
        merchant=merchant,
        name=(filename or "file").replace("/", "_").replace("\\", "_")[:255],
        content_type=CONTENT_TYPES[validated.source_format],
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        metadata=metadata or {},
        expires_at=timezone.now() + timedelta(seconds=settings.API_FILE_MAX_AGE_S),
    )
    upload.file.save("upload", ContentFile(data), save=False)
    try:
        upload.save()
    except BaseException:
        upload.file.delete(save=False)
        raise
    return upload


def uploaded_file_delete(*, upload: UploadedFile) -> None:
    """Remove the row, then the stored bytes once that is committed."""
    name = upload.file.name
    storage = upload.file.storage
    upload.delete()
    if name:
        transaction.on_commit(lambda: storage.delete(name))


def image_from_input(*, merchant: Merchant, value: str, field: str = "image") -> ValidatedImage:
    """The photo named by an API input: a data URI, or the URL of one of the merchant's uploaded files.

    No other URL is ever fetched: the server calling arbitrary URLs for a client is how internal
    networks get probed.
    """
    value = value.strip()
    if value.startswith("data:"):
        match = _DATA_URI.match(value)
        if match is None or not match.group("b64"):
            raise FieldsInvalid.one(field, "a data URI must be base64-encoded (data:image/png;base64,...).")
        encoded = re.sub(r"\s+", "", value[match.end() :])
        if len(encoded) * 3 // 4 > settings.UPLOAD_MAX_BYTES + 2:
            raise _too_large()
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise FieldsInvalid.one(field, "the data URI is not valid base64.") from exc
        return upload_validate(data)
    path_match = (
        _FILE_PATH.match(urlsplit(value).path) if value.startswith(("http://", "https://", "/")) else None
    )
    if path_match is None:
        raise FieldsInvalid.one(
            field,
            "give a data URI, or the URL of a file uploaded to /v1/files; other URLs are not fetched.",
        )
    try:
        upload = uploaded_file_get(merchant=merchant, public_id=path_match.group("id"))
    except NotFound as exc:
        raise FieldsInvalid.one(
            field, "there is no uploaded file at this URL (it may have expired)."
        ) from exc
    with upload.file.open("rb") as handle:
        return upload_validate(handle.read())


# -- jobs --------------------------------------------------------------------------------------


def styles_resolve(
    *, merchant: Merchant, styles: Sequence[str] | None, count: int | None
) -> tuple[list[str], int | None]:
    """The styles and count to ask ``job_create`` for.

    Given styles are used as they are. Without styles, the merchant's first ``count`` styles (five
    by default) are used, one variation each, going round again if there are fewer.
    """
    if styles:
        return [s.strip() for s in styles], count
    wanted = count or MAX_VARIATIONS
    available = list(style_list_for_merchant(merchant=merchant).values_list("slug", flat=True)[:wanted])
    if not available:
        raise FieldsInvalid.one(
            "styles", "no styles are available to this shop; ask the operator to add one."
        )
    return [available[i % len(available)] for i in range(wanted)], None


def api_job_create(
    *,
    merchant: Merchant,
    image: ValidatedImage,
    options: JobOptions,
    base_url: str,
    input_echo: dict[str, Any] | None = None,
    webhook_field: str = "webhook",
    cancel_after_s: int | None = None,
) -> Job:
    """Create a job for an API request and remember the request's origin and input for later.

    Checks the webhook target first (422 naming ``webhook_field`` if it is refused), reports an
    unknown style as a 422 on ``styles``, and with ``cancel_after_s`` schedules the job's
    cancellation that long after creation if it has not finished by then. Idempotent per
    ``options.idempotency_key`` like ``job_create``.
    """
    if options.webhook_url:
        webhook_target_check(options.webhook_url, field=webhook_field)
    try:
        with transaction.atomic():
            job = job_create(merchant=merchant, image=image, options=options)
            _context, created = JobApiContext.objects.get_or_create(
                job=job, defaults={"base_url": base_url, "input": input_echo or {}}
            )
    except NotFound as exc:
        if exc.code == "unknown_style":
            raise FieldsInvalid.one("styles", exc.message, code="unknown_style") from exc
        raise
    if created and cancel_after_s:
        from mockups.api.tasks import prediction_deadline

        job_id = str(job.public_id)
        transaction.on_commit(
            lambda: prediction_deadline.send_with_options(args=(job_id,), delay=cancel_after_s * 1000)
        )
    return job


def job_deadline_reached(*, public_id: str) -> None:
    """Cancel the job if it is still running (idempotent: a finished job is left as it is)."""
    job = Job.objects.filter(public_id=public_id).first()
    if job is not None and not job.is_final:
        job_cancel(job=job)


def input_echo(data: dict[str, Any]) -> dict[str, Any]:
    """The input as it will be echoed back: data URIs abbreviated, everything else as given."""
    echo = dict(data)
    image = echo.get("image")
    if isinstance(image, str) and image.startswith("data:"):
        echo["image"] = image.split(",", 1)[0] + f",...({len(image)} characters)"
    return echo
