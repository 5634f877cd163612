"""The Replicate-compatible API, ``/v1/``: a Replicate client works here given only our base URL and a key.

The generation model is ``mockups/product-mockup``. A prediction is a job: its id is the job's
UUID as 32 hex digits, its status is the job's mapped to Replicate's five (queued is
``starting``; preparing and generating are ``processing``), its output the finished images'
signed URLs in the order they finished.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.text import slugify
from ninja import File, Form, Query, Router, Schema, Status
from ninja.files import UploadedFile as NinjaUploadedFile
from ninja.params import HeaderEx, P
from pydantic import Field

from mockups.api.auth import request_merchant
from mockups.api.model_card import (
    COG_VERSION,
    DESCRIPTION,
    MODEL_NAME,
    MODEL_OWNER,
    VERSION_CREATED_AT,
    model_openapi_schema,
    model_version_id,
    version_matches,
)
from mockups.api.pagination import keyset_page
from mockups.api.problems import FieldError, FieldsInvalid, field_errors_from_message
from mockups.api.representations import (
    file_representation,
    prediction_representation,
    request_base,
)
from mockups.api.schemas import (
    AccountOut,
    FileOut,
    FilePage,
    ModelOut,
    PredictionOut,
    PredictionPage,
    PredictionRequest,
    Problem,
    VersionedPredictionRequest,
    VersionOut,
    VersionPage,
    WebhookSecretOut,
)
from mockups.api.selectors import (
    api_job_get,
    api_job_list,
    job_for_idempotency_key,
    uploaded_file_get,
    uploaded_file_list,
)
from mockups.api.services import (
    api_job_create,
    image_from_input,
    input_echo,
    styles_resolve,
    uploaded_file_create,
    uploaded_file_delete,
)
from mockups.api.webhooks import EVENT_COMPLETED, merchant_webhook_secret
from mockups.errors import NotFound, ValidationFailed
from mockups.jobs.intake import ImageRejected
from mockups.jobs.models import FINAL_JOB_STATUSES, Job, JobSource
from mockups.jobs.services import WEBHOOK_EVENTS, JobOptions, job_cancel

router = Router(tags=["replicate"])

READ_PROBLEMS: dict[int, Any] = {401: Problem, 404: Problem, 422: Problem}
WRITE_PROBLEMS: dict[int, Any] = {**READ_PROBLEMS, 400: Problem, 409: Problem, 413: Problem, 415: Problem}
CREATE_PROBLEMS: dict[int, Any] = {**WRITE_PROBLEMS, 429: Problem}
WAIT_MAX_S = 60
WAIT_POLL_S = 0.25
CANCEL_AFTER_MIN_S = 5
CANCEL_AFTER_MAX_S = 7 * 24 * 3600 - 60  # the brokers' longest delay is seven days
_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
# Service messages name the native fields; a prediction's client knows them under these names.
_INPUT_FIELDS = {
    "count": "input.num_outputs",
    "styles": "input.styles",
    "seed": "input.seed",
    "steps": "input.steps",
    "guidance": "input.guidance",
    "negative_prompt": "input.negative_prompt",
    "output_preset": "input.output_preset",
    "output_format": "input.output_format",
    "product_name": "input.product_name",
}

Prefer = HeaderEx[
    str | None,
    P(
        alias="Prefer",
        max_length=100,
        description="'wait' or 'wait=N' (1 to 60): answer when the prediction is done, or after N seconds "
        "with status 'starting' if it is not.",
    ),
]
CancelAfter = HeaderEx[
    str | None,
    P(
        alias="Cancel-After",
        max_length=20,
        description="Cancel the prediction if not finished this long after creation: '90s', '5m', '1h30m'.",
    ),
]
IdempotencyKey = HeaderEx[str | None, P(alias="Idempotency-Key", max_length=200)]


class ListQuery(Schema):
    cursor: str | None = Field(None, max_length=500)


def prefer_wait_seconds(value: str | None) -> int | None:
    """Seconds to hold the request from a ``Prefer`` header: ``wait`` is 60, ``wait=N`` is N (1 to 60)."""
    for token in (value or "").split(","):
        name, _, argument = token.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not argument.strip():
            return WAIT_MAX_S
        if not argument.strip().isdigit() or not 1 <= int(argument) <= WAIT_MAX_S:
            raise FieldsInvalid.one(
                "Prefer", f"wait=N takes a whole number of seconds from 1 to {WAIT_MAX_S}."
            )
        return int(argument)
    return None


def cancel_after_seconds(value: str | None) -> int | None:
    """A ``Cancel-After`` duration in seconds: plain seconds or Go-style '1h30m', '90s' (5 s to 7 days)."""
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    match = _DURATION.match(text) if not text.isdigit() else None
    if text.isdigit():
        seconds = int(text)
    elif match is not None and any(match.groupdict().values()):
        seconds = sum(
            int(match.group(unit) or 0) * factor for unit, factor in (("h", 3600), ("m", 60), ("s", 1))
        )
    else:
        raise FieldsInvalid.one("Cancel-After", "give a duration such as '90s', '5m' or '1h30m'.")
    if not CANCEL_AFTER_MIN_S <= seconds <= CANCEL_AFTER_MAX_S:
        raise FieldsInvalid.one("Cancel-After", f"must be between {CANCEL_AFTER_MIN_S} seconds and 7 days.")
    return seconds


def _styles_list(value: list[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()] or None


def _wait_until_final(*, job: Job, seconds: int) -> Job:
    """Hold the request until the job is final or time is up, polling the database (any process runs it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = Job.objects.filter(pk=job.pk).values_list("status", flat=True).first()
        if status is None or status in FINAL_JOB_STATUSES:
            break
        time.sleep(min(WAIT_POLL_S, max(deadline - time.monotonic(), 0)))
    return api_job_get(merchant=job.merchant, public_id=job.public_id)


def _prediction_create(
    request: HttpRequest,
    response: HttpResponse,
    body: PredictionRequest,
    *,
    prefer: str | None,
    cancel_after: str | None,
    idempotency_key: str | None,
) -> Any:
    merchant = request_merchant(request)
    base = request_base(request)
    wait_s = prefer_wait_seconds(prefer)
    cancel_after_s = cancel_after_seconds(cancel_after)
    key = (idempotency_key or "").strip()
    job = job_for_idempotency_key(merchant=merchant, key=key)
    if job is not None:
        response["Idempotent-Replayed"] = "true"
    else:
        job = _job_create(merchant=merchant, base=base, body=body, key=key, cancel_after_s=cancel_after_s)
    if wait_s:
        job = _wait_until_final(job=job, seconds=wait_s)
    prediction = prediction_representation(job, base=base)
    if wait_s and not job.is_final:
        # Replicate's clients take any status but "starting" after a wait as final.
        prediction["status"] = "starting"
    response["Location"] = prediction["urls"]["get"]
    return Status(201, prediction)


def _job_create(
    *, merchant: Any, base: str, body: PredictionRequest, key: str, cancel_after_s: int | None
) -> Job:
    given = body.input
    styles = _styles_list(given.styles)
    count = given.num_outputs
    if styles and len(styles) > 1 and count is not None and count != len(styles):
        raise FieldsInvalid.one(
            "input.num_outputs", "with several styles, leave it out or make it the number of styles."
        )
    if styles and len(styles) > 1:
        count = None
    webhook = (body.webhook or body.webhook_completed or "").strip()
    events: list[str]
    if body.webhook_events_filter is not None:
        events = [str(event) for event in body.webhook_events_filter]
    elif not body.webhook and body.webhook_completed:
        events = [EVENT_COMPLETED]
    else:
        events = list(WEBHOOK_EVENTS)
    try:
        image = image_from_input(merchant=merchant, value=given.image, field="input.image")
        styles, count = styles_resolve(merchant=merchant, styles=styles, count=count)
        options = JobOptions(
            styles=styles,
            count=count,
            seed=given.seed,
            steps=given.steps,
            guidance=given.guidance,
            negative_prompt=given.negative_prompt,
            output_preset=given.output_preset,
            output_format=given.output_format,
            product_name=given.product_name,
            webhook_url=webhook,
            webhook_events=events,
            idempotency_key=key,
            source=JobSource.REPLICATE,
        )
        return api_job_create(
            merchant=merchant,
            image=image,
            options=options,
            base_url=base,
            input_echo=input_echo(given.model_dump(exclude_none=True)),
            webhook_field="webhook",
            cancel_after_s=cancel_after_s,
        )
    except ImageRejected as exc:
        if exc.status_code != 422:
            raise
        raise FieldsInvalid.one("input.image", exc.message, code=exc.code) from exc
    except FieldsInvalid as exc:
        raise FieldsInvalid(
            [FieldError(_INPUT_FIELDS.get(e.field, e.field), e.message) for e in exc.errors], code=exc.code
        ) from exc
    except ValidationFailed as exc:
        errors = field_errors_from_message(exc.message, default_field="input")
        raise FieldsInvalid(
            [FieldError(_INPUT_FIELDS.get(e.field, e.field), e.message) for e in errors], code=exc.code
        ) from exc


def _our_model(owner: str, name: str) -> None:
    if (owner, name) != (MODEL_OWNER, MODEL_NAME):
        raise NotFound(f"There is no model {owner}/{name}; this server runs {MODEL_OWNER}/{MODEL_NAME}.")


# -- predictions -------------------------------------------------------------------------------


@router.post(
    "/predictions",
    response={201: PredictionOut, **CREATE_PROBLEMS},
    url_name="prediction_create",
    summary="Create a prediction (by version)",
)
def prediction_create(
    request: HttpRequest,
    response: HttpResponse,
    body: VersionedPredictionRequest,
    prefer: Prefer = None,
    cancel_after: CancelAfter = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    if not version_matches(body.version):
        raise FieldsInvalid.one(
            "version", f"unknown version; use {model_version_id()} (model {MODEL_OWNER}/{MODEL_NAME})."
        )
    return _prediction_create(
        request, response, body, prefer=prefer, cancel_after=cancel_after, idempotency_key=idempotency_key
    )


@router.post(
    "/models/{owner}/{name}/predictions",
    response={201: PredictionOut, **CREATE_PROBLEMS},
    url_name="model_prediction_create",
    summary="Create a prediction with the model's latest version",
)
def model_prediction_create(
    request: HttpRequest,
    response: HttpResponse,
    owner: str,
    name: str,
    body: PredictionRequest,
    prefer: Prefer = None,
    cancel_after: CancelAfter = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    _our_model(owner, name)
    return _prediction_create(
        request, response, body, prefer=prefer, cancel_after=cancel_after, idempotency_key=idempotency_key
    )


@router.post(
    "/deployments/{owner}/{name}/predictions",
    response={201: PredictionOut, **CREATE_PROBLEMS},
    url_name="deployment_prediction_create",
    summary="Create a prediction on the deployment (the model itself)",
)
def deployment_prediction_create(
    request: HttpRequest,
    response: HttpResponse,
    owner: str,
    name: str,
    body: PredictionRequest,
    prefer: Prefer = None,
    cancel_after: CancelAfter = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """This server has one deployment, named like its model."""
    _our_model(owner, name)
    return _prediction_create(
        request, response, body, prefer=prefer, cancel_after=cancel_after, idempotency_key=idempotency_key
    )


@router.get(
    "/predictions",
    response={200: PredictionPage, **READ_PROBLEMS},
    url_name="prediction_list",
    summary="List predictions",
)
def prediction_list(request: HttpRequest, query: Query[ListQuery]) -> Any:
    merchant = request_merchant(request)
    base = request_base(request)
    page = keyset_page(api_job_list(merchant=merchant), cursor=query.cursor, limit=settings.API_PAGE_SIZE)
    next_url, previous_url = page.links(base + reverse("api:prediction_list"))
    return {
        "next": next_url,
        "previous": previous_url,
        "results": [prediction_representation(job, base=base) for job in page.items],
    }


@router.get(
    "/predictions/{prediction_id}",
    response={200: PredictionOut, **READ_PROBLEMS},
    url_name="prediction_get",
    summary="Get a prediction",
)
def prediction_get(request: HttpRequest, prediction_id: str) -> Any:
    job = api_job_get(merchant=request_merchant(request), public_id=prediction_id)
    return prediction_representation(job, base=request_base(request))


@router.post(
    "/predictions/{prediction_id}/cancel",
    response={200: PredictionOut, **WRITE_PROBLEMS},
    url_name="prediction_cancel",
    summary="Cancel a prediction",
)
def prediction_cancel(request: HttpRequest, prediction_id: str) -> Any:
    merchant = request_merchant(request)
    job = job_cancel(job=api_job_get(merchant=merchant, public_id=prediction_id))
    return prediction_representation(
        api_job_get(merchant=merchant, public_id=job.public_id), base=request_base(request)
    )


# -- files --------------------------------------------------------------------------------------


@router.post(
    "/files", response={201: FileOut, **WRITE_PROBLEMS}, url_name="file_create", summary="Upload a file"
)
def file_create(
    request: HttpRequest,
    content: File[NinjaUploadedFile],
    filename: Form[str | None] = None,
    metadata: Form[str | None] = None,
) -> Any:
    """A product photo to pass as ``input.image`` (its ``urls.get``); it expires after API_FILE_MAX_AGE_S."""
    try:
        parsed = json.loads(metadata) if metadata else {}
    except json.JSONDecodeError as exc:
        raise FieldsInvalid.one("metadata", "must be a JSON object.") from exc
    if not isinstance(parsed, dict):
        raise FieldsInvalid.one("metadata", "must be a JSON object.")
    if content.size is not None and content.size > settings.UPLOAD_MAX_BYTES:
        raise ImageRejected(
            f"This file is larger than {settings.UPLOAD_MAX_BYTES // (1024 * 1024)} MB.",
            code="image_file_too_large",
            status_code=413,
        )
    upload = uploaded_file_create(
        merchant=request_merchant(request),
        data=content.read(),
        filename=filename or content.name or "file",
        metadata=parsed,
    )
    return Status(201, file_representation(upload, base=request_base(request)))


@router.get(
    "/files", response={200: FilePage, **READ_PROBLEMS}, url_name="file_list", summary="List uploaded files"
)
def file_list(request: HttpRequest, query: Query[ListQuery]) -> Any:
    merchant = request_merchant(request)
    base = request_base(request)
    page = keyset_page(
        uploaded_file_list(merchant=merchant), cursor=query.cursor, limit=settings.API_PAGE_SIZE
    )
    next_url, previous_url = page.links(base + reverse("api:file_list"))
    return {
        "next": next_url,
        "previous": previous_url,
        "results": [file_representation(f, base=base) for f in page.items],
    }


@router.get(
    "/files/{file_id}",
    response={200: FileOut, **READ_PROBLEMS},
    url_name="file_get",
    summary="Get an uploaded file",
)
def file_get(request: HttpRequest, file_id: str) -> Any:
    upload = uploaded_file_get(merchant=request_merchant(request), public_id=file_id)
    return file_representation(upload, base=request_base(request))


@router.delete(
    "/files/{file_id}",
    response={204: None, **READ_PROBLEMS},
    url_name="file_delete",
    summary="Delete an uploaded file",
)
def file_delete(request: HttpRequest, file_id: str) -> Any:
    uploaded_file_delete(upload=uploaded_file_get(merchant=request_merchant(request), public_id=file_id))
    return Status(204, None)


@router.get(
    "/files/{file_id}/download",
    response={200: None, **READ_PROBLEMS},
    url_name="file_download",
    summary="Download an uploaded file",
    openapi_extra={
        "responses": {
            "200": {
                "description": "The file's bytes.",
                "content": {
                    kind: {"schema": {"type": "string", "format": "binary"}}
                    for kind in ("image/jpeg", "image/png", "image/webp")
                },
            }
        }
    },
)
def file_download(request: HttpRequest, file_id: str) -> Any:
    upload = uploaded_file_get(merchant=request_merchant(request), public_id=file_id)
    response = FileResponse(upload.file.open("rb"), content_type=upload.content_type)
    response["Content-Disposition"] = f'attachment; filename="{upload.public_id.hex}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


# -- the model -----------------------------------------------------------------------------------


def _version() -> dict[str, Any]:
    return {
        "id": model_version_id(),
        "created_at": VERSION_CREATED_AT,
        "cog_version": COG_VERSION,
        "openapi_schema": model_openapi_schema(),
    }


@router.get(
    "/models/{owner}/{name}",
    response={200: ModelOut, **READ_PROBLEMS},
    url_name="model_get",
    summary="Get the model",
)
def model_get(request: HttpRequest, owner: str, name: str) -> Any:
    _our_model(owner, name)
    merchant = request_merchant(request)
    base = request_base(request)
    return {
        "url": base + reverse("api:model_get", args=[owner, name]),
        "owner": MODEL_OWNER,
        "name": MODEL_NAME,
        "description": DESCRIPTION,
        "visibility": "private",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": api_job_list(merchant=merchant).count(),
        "cover_image_url": None,
        "default_example": None,
        "latest_version": _version(),
    }


@router.get(
    "/models/{owner}/{name}/versions",
    response={200: VersionPage, **READ_PROBLEMS},
    url_name="model_version_list",
    summary="List the model's versions",
)
def model_version_list(request: HttpRequest, owner: str, name: str) -> Any:
    _our_model(owner, name)
    return {"next": None, "previous": None, "results": [_version()]}


@router.get(
    "/models/{owner}/{name}/versions/{version_id}",
    response={200: VersionOut, **READ_PROBLEMS},
    url_name="model_version_get",
    summary="Get a model version",
)
def model_version_get(request: HttpRequest, owner: str, name: str, version_id: str) -> Any:
    _our_model(owner, name)
    if version_id != model_version_id():
        raise NotFound(f"The model has no version {version_id!r}.")
    return _version()


# -- webhooks -------------------------------------------------------------------------------------


@router.get(
    "/webhooks/default/secret",
    response={200: WebhookSecretOut, **READ_PROBLEMS},
    url_name="webhook_secret",
    summary="The secret webhooks are signed with",
)
def webhook_secret(request: HttpRequest) -> Any:
    """``whsec_`` + base64: verify ``webhook-signature`` with it (Replicate's ``Webhooks.validate`` does)."""
    return {"key": merchant_webhook_secret(merchant=request_merchant(request))}


# -- the account ---------------------------------------------------------------------------------


@router.get(
    "/account", response={200: AccountOut, **READ_PROBLEMS}, url_name="account_get", summary="The account"
)
def account_get(request: HttpRequest) -> Any:
    """The merchant the key belongs to, as Replicate's ``accounts.current()`` reads it."""
    merchant = request_merchant(request)
    return {
        "type": "organization",
        "username": slugify(merchant.name) or merchant.public_id.hex,
        "name": merchant.name,
        "github_url": None,
    }
