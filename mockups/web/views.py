"""The merchant's browser UI: thin views over the job services; the page script does the rest."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from mockups.accounts.selectors import merchant_for_user
from mockups.catalog.selectors import style_list_for_merchant
from mockups.errors import DomainError, ValidationFailed
from mockups.jobs.media import media_url
from mockups.jobs.selectors import job_get, job_list
from mockups.jobs.services import JobOptions, TooManyJobs, job_cancel, job_create, variation_regenerate
from mockups.jobs.snapshots import job_snapshot
from mockups.jobs.uploads import upload_validate


def json_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Domain errors become JSON with the merchant-facing message and the right 4xx status."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except DomainError as exc:
            response = JsonResponse({"error": exc.message, "code": exc.code}, status=exc.status_code)
            if isinstance(exc, TooManyJobs):
                response["Retry-After"] = str(exc.retry_after)
            return response

    return wrapper


def _int_or_none(value: str | None, field: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ValidationFailed(f"{field}: must be a whole number.") from exc


@login_required
def studio(request: HttpRequest, job_id: str | None = None) -> HttpResponse:
    merchant = merchant_for_user(user=request.user)
    job = job_get(merchant=merchant, public_id=job_id) if job_id else None
    styles = [
        {
            "key": style.slug,
            "name": style.name,
            "description": style.description,
            "thumbnail": media_url(style.thumbnail.name) if style.thumbnail else "",
            "backdrop": style.current_version.backdrop if style.current_version else "",
        }
        for style in style_list_for_merchant(merchant=merchant)
    ]
    from django.conf import settings

    return render(
        request,
        "web/studio.html",
        {
            "merchant": merchant,
            "styles": styles,
            "job_id": str(job.public_id) if job else "",
            "max_upload_bytes": settings.UPLOAD_MAX_BYTES,
        },
    )


@login_required
def history(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(user=request.user)
    jobs = job_list(merchant=merchant)[:100]
    return render(request, "web/history.html", {"merchant": merchant, "jobs": jobs})


@require_POST
@login_required
@json_errors
def job_create_view(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(user=request.user)
    upload = request.FILES.get("image")
    if upload is None:
        raise ValidationFailed("Choose a product photo to upload.", code="image_missing")
    image = upload_validate(upload)  # type: ignore[arg-type]  # an UploadedFile reads like a binary file
    options = JobOptions(
        styles=request.POST.getlist("styles"),
        count=_int_or_none(request.POST.get("count"), "count"),
        seed=_int_or_none(request.POST.get("seed"), "seed"),
        product_name=request.POST.get("product_name", ""),
        output_format=request.POST.get("output_format") or "png",
        source="web",
    )
    job = job_create(merchant=merchant, image=image, options=options, user=request.user)
    return JsonResponse(job_snapshot(job_get(merchant=merchant, public_id=job.public_id)), status=201)


@require_GET
@login_required
@json_errors
def job_detail_json(request: HttpRequest, job_id: str) -> HttpResponse:
    job = job_get(merchant=merchant_for_user(user=request.user), public_id=job_id)
    return JsonResponse(job_snapshot(job))


@require_POST
@login_required
@json_errors
def job_cancel_view(request: HttpRequest, job_id: str) -> HttpResponse:
    merchant = merchant_for_user(user=request.user)
    job = job_cancel(job=job_get(merchant=merchant, public_id=job_id))
    return JsonResponse(job_snapshot(job_get(merchant=merchant, public_id=job.public_id)))


@require_POST
@login_required
@json_errors
def variation_regenerate_view(request: HttpRequest, job_id: str, index: int) -> HttpResponse:
    merchant = merchant_for_user(user=request.user)
    job = job_get(merchant=merchant, public_id=job_id)
    variation_regenerate(job=job, index=index, seed=_int_or_none(request.POST.get("seed"), "seed"))
    return JsonResponse(job_snapshot(job_get(merchant=merchant, public_id=job.public_id)))


@require_GET
@login_required
@json_errors
def job_download_zip(request: HttpRequest, job_id: str) -> HttpResponse:
    job = job_get(merchant=merchant_for_user(user=request.user), public_id=job_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for variation in job.variations.all():
            if variation.image.name:
                ext = variation.image.name.rsplit(".", 1)[-1]
                with default_storage.open(variation.image.name, "rb") as handle:
                    archive.writestr(
                        f"mockup-{variation.index + 1}-{variation.style_version.style.slug}.{ext}",
                        handle.read(),
                    )
    if not buffer.tell() or all(not v.image for v in job.variations.all()):
        raise ValidationFailed("This job has no finished images yet.", code="nothing_to_download")
    response = HttpResponse(buffer.getvalue(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="mockups-{job.public_id}.zip"'
    return response


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the web process answers and reaches its database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
