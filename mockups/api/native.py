"""The native API, ``/api/v1/``: mockups (create, list, get, cancel, regenerate), styles, health.

Thin operations: parse, one service call, a representation out. Everything is scoped to the
merchant of the API key; another merchant's ids answer 404 like missing ones.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Query, Router, Schema, Status
from ninja.params import HeaderEx, P
from pydantic import Field

from mockups.api.auth import request_merchant
from mockups.api.health import health_report
from mockups.api.pagination import keyset_page
from mockups.api.problems import FieldsInvalid
from mockups.api.representations import mockup_representation, request_base
from mockups.api.schemas import (
    HealthOut,
    MockupCreateFields,
    MockupCreateJson,
    MockupCreateMultipart,
    MockupOut,
    MockupPage,
    Problem,
    RegenerateIn,
    StyleOut,
)
from mockups.api.selectors import api_job_get, api_job_list, job_for_idempotency_key
from mockups.api.services import api_job_create, image_from_input, styles_resolve
from mockups.catalog.selectors import style_list_for_merchant
from mockups.errors import DomainError
from mockups.jobs.intake import ValidatedImage
from mockups.jobs.media import media_url
from mockups.jobs.models import JobSource
from mockups.jobs.services import WEBHOOK_EVENTS, JobOptions, job_cancel, queue_view, variation_regenerate
from mockups.jobs.uploads import upload_validate

router = Router(tags=["mockups"])

READ_PROBLEMS: dict[int, Any] = {401: Problem, 404: Problem, 422: Problem}
WRITE_PROBLEMS: dict[int, Any] = {**READ_PROBLEMS, 400: Problem, 409: Problem, 413: Problem, 415: Problem}
CREATE_PROBLEMS: dict[int, Any] = {**WRITE_PROBLEMS, 429: Problem}
MULTIPART_LIST_FIELDS = ("styles", "webhook_events")

IdempotencyKey = HeaderEx[
    str | None,
    P(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a create safely: the same key, the same job.",
    ),
]


class ListQuery(Schema):
    cursor: str | None = Field(None, max_length=500, description="From the next or previous link.")
    limit: int = Field(20, ge=1, le=100)


def _create_request_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": MockupCreateJson.model_json_schema()},
                "multipart/form-data": {"schema": MockupCreateMultipart.model_json_schema()},
            },
        }
    }


def _parse_create(request: HttpRequest) -> tuple[MockupCreateFields, str | None, Any]:
    """The create request's fields, and the photo: an input string (JSON) or an uploaded file (multipart)."""
    content_type = request.content_type or ""
    if content_type == "multipart/form-data":
        data: dict[str, Any] = {}
        for key in request.POST:
            values = [v for v in request.POST.getlist(key) if v != ""]
            if key in MULTIPART_LIST_FIELDS:
                data[key] = values or None
            elif values:
                data[key] = values[-1]
        upload = request.FILES.get("image")
        if upload is None:
            raise FieldsInvalid.one("image", "attach the product photo as a file part named 'image'.")
        return MockupCreateFields.model_validate(data), None, upload
    if content_type != "application/json":
        raise DomainError(
            "Send the request as application/json or multipart/form-data.",
            code="unsupported_media_type",
            status_code=415,
        )
    body = MockupCreateJson.model_validate(_json_object(request))
    return body, body.image, None


def _json_object(request: HttpRequest) -> dict[str, Any]:
    try:
        payload = json.loads(request.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FieldsInvalid.one("body", f"is not valid JSON ({exc}).") from exc
    if not isinstance(payload, dict):
        raise FieldsInvalid.one("body", "must be a JSON object.")
    return payload


@router.post(
    "/mockups",
    response={201: MockupOut, 200: MockupOut, **CREATE_PROBLEMS},
    url_name="mockup_create",
    summary="Create a mockup job from a product photo",
    openapi_extra=_create_request_body(),
)
def mockup_create(
    request: HttpRequest, response: HttpResponse, idempotency_key: IdempotencyKey = None
) -> Any:
    """Multipart (a file part ``image``) or JSON (``image`` as a data URI or an uploaded file's URL).

    201 with the new job; 200 with the first job when the Idempotency-Key was seen before.
    """
    merchant = request_merchant(request)
    base = request_base(request)
    key = (idempotency_key or "").strip()
    existing = job_for_idempotency_key(merchant=merchant, key=key)
    if existing is not None:
        response["Idempotent-Replayed"] = "true"
        return Status(200, mockup_representation(existing, base=base))
    fields, image_input, upload = _parse_create(request)
    image: ValidatedImage = (
        upload_validate(upload)
        if upload is not None
        else image_from_input(merchant=merchant, value=image_input or "")
    )
    styles, count = styles_resolve(merchant=merchant, styles=fields.styles, count=fields.count)
    options = JobOptions(
        styles=styles,
        count=count,
        seed=fields.seed,
        steps=fields.steps,
        guidance=fields.guidance,
        negative_prompt=fields.negative_prompt,
        output_preset=fields.output_preset,
        output_format=fields.output_format,
        product_name=fields.product_name,
        webhook_url=(fields.webhook_url or "").strip(),
        webhook_events=list(fields.webhook_events)
        if fields.webhook_events is not None
        else list(WEBHOOK_EVENTS),
        idempotency_key=key,
        source=JobSource.API,
    )
    job = api_job_create(
        merchant=merchant, image=image, options=options, base_url=base, webhook_field="webhook_url"
    )
    response["Location"] = base + reverse("api:mockup_get", args=[job.public_id])
    return Status(
        201, mockup_representation(api_job_get(merchant=merchant, public_id=job.public_id), base=base)
    )


@router.get(
    "/mockups",
    response={200: MockupPage, **READ_PROBLEMS},
    url_name="mockup_list",
    summary="List mockup jobs",
)
def mockup_list(request: HttpRequest, query: Query[ListQuery]) -> Any:
    """Newest first; follow ``next`` for older jobs and ``previous`` for newer ones."""
    merchant = request_merchant(request)
    base = request_base(request)
    page = keyset_page(api_job_list(merchant=merchant), cursor=query.cursor, limit=query.limit)
    next_url, previous_url = page.links(base + reverse("api:mockup_list"), limit=query.limit)
    queue = queue_view(jobs=page.items)
    return {
        "results": [mockup_representation(job, base=base, queue=queue) for job in page.items],
        "next": next_url,
        "previous": previous_url,
    }


@router.get(
    "/mockups/{job_id}",
    response={200: MockupOut, **READ_PROBLEMS},
    url_name="mockup_get",
    summary="Get a mockup job",
)
def mockup_get(request: HttpRequest, job_id: str) -> Any:
    job = api_job_get(merchant=request_merchant(request), public_id=job_id)
    return mockup_representation(job, base=request_base(request))


@router.post(
    "/mockups/{job_id}/cancel",
    response={200: MockupOut, **WRITE_PROBLEMS},
    url_name="mockup_cancel",
    summary="Cancel a mockup job",
)
def mockup_cancel(request: HttpRequest, job_id: str) -> Any:
    """A queued job is canceled at once; a running one stops between denoising steps. Idempotent."""
    merchant = request_merchant(request)
    job = job_cancel(job=api_job_get(merchant=merchant, public_id=job_id))
    return mockup_representation(
        api_job_get(merchant=merchant, public_id=job.public_id), base=request_base(request)
    )


@router.post(
    "/mockups/{job_id}/variations/{index}/regenerate",
    response={202: MockupOut, **WRITE_PROBLEMS},
    url_name="variation_regenerate",
    summary="Generate one variation again",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": RegenerateIn.model_json_schema()}},
        }
    },
)
def mockup_variation_regenerate(request: HttpRequest, job_id: str, index: int) -> Any:
    """With a new seed (random unless the optional JSON body gives one); the job goes back to the GPU."""
    merchant = request_merchant(request)
    job = api_job_get(merchant=merchant, public_id=job_id)
    if request.content_type == "application/json" and request.body.strip():
        payload = RegenerateIn.model_validate(_json_object(request))
    else:  # no body, or a form: the seed may come as a form field
        payload = RegenerateIn.model_validate({k: v for k, v in request.POST.items() if v != ""})
    variation_regenerate(job=job, index=index, seed=payload.seed)
    return Status(
        202,
        mockup_representation(
            api_job_get(merchant=merchant, public_id=job.public_id), base=request_base(request)
        ),
    )


@router.get(
    "/styles", response={200: list[StyleOut], **READ_PROBLEMS}, url_name="style_list", summary="List styles"
)
def style_list(request: HttpRequest) -> Any:
    """The styles this merchant may use, in the operators' order."""
    base = request_base(request)
    styles = []
    for style in style_list_for_merchant(merchant=request_merchant(request)):
        version = style.current_version
        if version is None:
            continue
        styles.append(
            {
                "id": str(style.public_id),
                "slug": style.slug,
                "name": style.name,
                "description": style.description,
                "version": version.number,
                "thumbnail": media_url(style.thumbnail.name, absolute_base=base) if style.thumbnail else None,
                "defaults": {
                    "steps": version.steps,
                    "guidance": version.guidance,
                    "output_preset": version.output_preset,
                    "scheduler": version.scheduler,
                    "backdrop": version.backdrop,
                },
            }
        )
    return styles


@router.get(
    "/health", response={200: HealthOut, **READ_PROBLEMS}, url_name="health", summary="Service health"
)
def health(request: HttpRequest) -> Any:
    """Web, database, broker, GPU workers seen in the last 30 s, models resident, queue depths."""
    return health_report()
