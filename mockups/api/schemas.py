"""The API's contract: request and response schemas of both the native and the Replicate-compatible API.

Ranges are those ``JobOptions.validate`` enforces, stated here as well so the OpenAPI schema tells
clients (and schemathesis) what is accepted; the service stays the final word.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from mockups.jobs.services import MAX_VARIATIONS

MAX_SEED = 2**32 - 1 - MAX_VARIATIONS  # each variation uses seed + index
OutputPresetName = Literal["square_1024", "marketplace_2000", "portrait_4_5", "landscape_16_9"]
OutputFormatName = Literal["png", "jpeg", "webp"]
WebhookEventName = Literal["start", "output", "logs", "completed"]
JobStatusName = Literal["queued", "preparing", "generating", "succeeded", "failed", "canceled"]
VariationStatusName = Literal["queued", "generating", "succeeded", "failed", "canceled"]
PredictionStatusName = Literal["starting", "processing", "succeeded", "failed", "canceled"]


class FieldErrorOut(Schema):
    field: str
    message: str


class Problem(Schema):
    """RFC 7807 problem details; ``errors`` lists each bad field of a 422."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[FieldErrorOut] | None = None


# -- generation options shared by both APIs --------------------------------------------------


class GenerationOptions(Schema):
    """Everything besides the photo. Unset values come from each style's current version."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Seed of the first variation; the next ones use seed+1, seed+2...",
    )
    steps: int | None = Field(None, ge=1, le=100, description="Denoising steps (default: the style's).")
    guidance: float | None = Field(None, ge=0, le=30, description="Classifier-free guidance scale.")
    negative_prompt: str | None = Field(None, max_length=1000)
    output_preset: OutputPresetName | None = Field(None, description="Size and framing of the outputs.")
    output_format: OutputFormatName = "png"
    product_name: str = Field("", max_length=120, description="Used in the prompts, e.g. 'ceramic mug'.")


# -- native API ------------------------------------------------------------------------------


class MockupCreateFields(GenerationOptions):
    styles: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_VARIATIONS,
        description="Style slugs or ids, one variation each; default: the first five styles.",
    )
    count: int | None = Field(
        None, ge=1, le=MAX_VARIATIONS, description="With exactly one style: how many variations of it."
    )
    webhook_url: str | None = Field(
        None, max_length=1000, description="Signed POSTs go here as the job runs."
    )
    webhook_events: list[WebhookEventName] | None = Field(
        None, description="Which events to send (default: all)."
    )


class MockupCreateJson(MockupCreateFields):
    image: str = Field(
        ...,
        max_length=40_000_000,
        description="The product photo as a data URI (data:image/png;base64,...) or the URL of a file "
        "uploaded to POST /v1/files. Other URLs are never fetched.",
    )


class MockupCreateMultipart(MockupCreateFields):
    """The multipart form: the same fields, the photo as a file part named ``image``."""

    image: bytes = Field(..., json_schema_extra={"format": "binary"})


class MockupParameters(Schema):
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    output_preset: str | None = None
    output_format: str = "png"


class VariationOut(Schema):
    index: int
    status: VariationStatusName
    style: str = Field(..., description="The style's slug.")
    style_name: str
    style_version: int
    seed: int
    step: int
    steps: int
    image: str | None = Field(None, description="Signed, expiring URL; usable in an <img> without a key.")
    format: str | None = None
    width: int | None = None
    height: int | None = None
    fidelity_max_delta: int | None = Field(
        None, description="Largest change on a fully opaque product pixel (0 = pixel-exact)."
    )
    gpu_seconds: float
    error: str | None = None


class JobError(Schema):
    code: str
    message: str


class MockupUrls(Schema):
    get: str
    cancel: str
    web: str


class MockupOut(Schema):
    id: str
    status: JobStatusName
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    product_name: str
    queue_position: int = Field(..., description="1 = next to reach the GPU; 0 once running or done.")
    eta_seconds: float | None
    original: str
    cutout: str | None
    mask: str | None
    cutout_method: str | None
    cutout_confidence: float | None
    parameters: MockupParameters
    variations: list[VariationOut]
    gpu_seconds: float
    cost_per_image: float = Field(..., description="GPU seconds per finished image at the GPU hourly price.")
    gpu_hourly_price: float
    error: JobError | None
    webhook_url: str | None
    webhook_events: list[str]
    urls: MockupUrls


class MockupPage(Schema):
    results: list[MockupOut]
    next: str | None
    previous: str | None


class RegenerateIn(Schema):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Default: a new random seed.")


class StyleDefaults(Schema):
    steps: int
    guidance: float
    output_preset: str
    scheduler: str
    backdrop: str


class StyleOut(Schema):
    id: str
    slug: str
    name: str
    description: str
    version: int
    thumbnail: str | None
    defaults: StyleDefaults


class ComponentHealth(Schema):
    ok: bool
    detail: str = ""
    latency_ms: float | None = None


class BrokerHealth(ComponentHealth):
    kind: str


class GpuWorkerOut(Schema):
    name: str
    last_seen_at: datetime
    models_resident: list[str]
    health: dict[str, Any]


class HealthOut(Schema):
    status: Literal["ok", "degraded"]
    web: ComponentHealth
    database: ComponentHealth
    broker: BrokerHealth
    gpu_workers: list[GpuWorkerOut]
    models_resident: list[str]
    queues: dict[str, int | None] = Field(..., description="Messages waiting per queue (None: unknown).")
    jobs: dict[str, int] = Field(..., description="Jobs of all merchants per active status.")


# -- Replicate-compatible API ------------------------------------------------------------------


class PredictionInput(GenerationOptions):
    """The inputs of ``mockups/product-mockup``."""

    image: str = Field(
        ...,
        max_length=40_000_000,
        description="The product photo: the URL of a file uploaded to /v1/files, or a data URI.",
        json_schema_extra={"format": "uri", "x-order": 0},
    )
    styles: list[str] | str | None = Field(
        None,
        description="Style slugs (a list, or one string with commas); default: the first five styles.",
    )
    num_outputs: int | None = Field(
        None, ge=1, le=MAX_VARIATIONS, description="How many images (default: one per style, or 5)."
    )


class PredictionRequest(Schema):
    input: PredictionInput
    webhook: str | None = Field(None, max_length=1000)
    webhook_completed: str | None = Field(None, max_length=1000)
    webhook_events_filter: list[WebhookEventName] | None = None
    stream: bool | None = Field(None, description="Accepted for compatibility; output is not streamed.")


class VersionedPredictionRequest(PredictionRequest):
    version: str = Field(
        ..., description="The model version id, or owner/name:version, or owner/name for the latest."
    )


class PredictionUrls(Schema):
    get: str
    cancel: str
    web: str


class PredictionOut(Schema):
    id: str
    model: str
    version: str
    input: dict[str, Any]
    output: list[str] | None
    logs: str
    error: str | None
    status: PredictionStatusName
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    urls: PredictionUrls
    metrics: dict[str, float | int]
    source: str
    data_removed: bool
    webhook: str | None
    webhook_events_filter: list[str] | None


class PredictionPage(Schema):
    next: str | None
    previous: str | None
    results: list[PredictionOut]


class FileUrls(Schema):
    get: str


class FileOut(Schema):
    id: str
    name: str
    content_type: str
    size: int
    etag: str
    checksums: dict[str, str]
    metadata: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None
    urls: FileUrls


class FilePage(Schema):
    next: str | None
    previous: str | None
    results: list[FileOut]


class VersionOut(Schema):
    id: str
    created_at: datetime
    cog_version: str
    openapi_schema: dict[str, Any]


class VersionPage(Schema):
    next: str | None
    previous: str | None
    results: list[VersionOut]


class ModelOut(Schema):
    url: str
    owner: str
    name: str
    description: str
    visibility: Literal["public", "private"]
    github_url: str | None
    paper_url: str | None
    license_url: str | None
    run_count: int
    cover_image_url: str | None
    default_example: dict[str, Any] | None
    latest_version: VersionOut


class WebhookSecretOut(Schema):
    key: str


class AccountOut(Schema):
    type: Literal["organization", "user"]
    username: str
    name: str
    github_url: str | None
