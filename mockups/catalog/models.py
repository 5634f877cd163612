"""What merchants can generate: base models, ControlNets, LoRA files and versioned styles."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from mockups.accounts.models import Merchant


class Dtype(models.TextChoices):
    FP16 = "fp16", "float16"
    BF16 = "bf16", "bfloat16"
    FP32 = "fp32", "float32"


class BaseModel(models.Model):
    """An SDXL base checkpoint: a hub id (resolved from the local cache only) or a local folder."""

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(
        max_length=500, help_text="Hub id (e.g. stabilityai/stable-diffusion-xl-base-1.0) or a local folder."
    )
    dtype = models.CharField(max_length=8, choices=Dtype.choices, default=Dtype.FP16)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_base_model"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ControlNetModel(models.Model):
    """An SDXL ControlNet (canny): a hub id or a local folder."""

    name = models.CharField(max_length=100, unique=True)
    source = models.CharField(max_length=500)
    dtype = models.CharField(max_length=8, choices=Dtype.choices, default=Dtype.FP16)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = "ControlNet"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_controlnet"
            )
        ]

    def __str__(self) -> str:
        return self.name


def lora_upload_to(instance: Lora, filename: str) -> str:
    return f"loras/{uuid.uuid4().hex}.safetensors"


class Lora(models.Model):
    """A LoRA file for the SDXL UNet, validated on upload (safetensors only)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    file = models.FileField(upload_to=lora_upload_to)
    sha256 = models.CharField(max_length=64, editable=False)
    rank = models.PositiveIntegerField(editable=False)
    size_bytes = models.BigIntegerField(editable=False)
    trigger_words = models.CharField(max_length=300, blank=True)
    preferred_weight = models.FloatField(default=0.8)
    licence_note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Set by the admin's "pre-load on every GPU worker" action; each worker's heartbeat loads
    # LoRAs requested after the last request it carried out (see mockups.fleet.heartbeat).
    preload_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "LoRA"

    def __str__(self) -> str:
        return self.name


class Style(models.Model):
    """A look merchants pick. Its settings live in immutable versions; jobs keep the version they used."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    is_enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=100, help_text="Lower comes first.")
    restricted_to = models.ManyToManyField(
        Merchant, blank=True, related_name="restricted_styles", help_text="Empty: every merchant may use it."
    )
    current_version = models.ForeignKey(
        "StyleVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    thumbnail = models.ImageField(upload_to="style-thumbnails/", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class BackdropKind(models.TextChoices):
    GENERATED = "generated", "Generated (diffusion)"
    STUDIO = "studio", "Studio (solid or gradient, no diffusion)"


class StudioFill(models.TextChoices):
    WHITE = "white", "Pure white"
    SOLID = "solid", "Solid colour"
    GRADIENT = "gradient", "Vertical gradient"


class ShadowPreset(models.TextChoices):
    NONE = "none", "No shadow"
    SOFT = "soft", "Soft contact shadow"


class OutputPreset(models.TextChoices):
    SQUARE_1024 = "square_1024", "Square 1024"
    MARKETPLACE_2000 = "marketplace_2000", "Marketplace 2000 on pure white"
    PORTRAIT_4_5 = "portrait_4_5", "Portrait 4:5"
    LANDSCAPE_16_9 = "landscape_16_9", "Landscape 16:9"


class Scheduler(models.TextChoices):
    EULER_A = "euler_a", "Euler ancestral"
    EULER = "euler", "Euler"
    DPMPP_2M = "dpmpp_2m", "DPM++ 2M"
    DPMPP_2M_KARRAS = "dpmpp_2m_karras", "DPM++ 2M Karras"
    DDIM = "ddim", "DDIM"
    UNIPC = "unipc", "UniPC"


class StyleVersion(models.Model):
    """One immutable revision of a style. A new save makes a new version."""

    style = models.ForeignKey(Style, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    prompt_template = models.TextField(help_text="Must contain {product}, replaced by the product's name.")
    negative_prompt = models.TextField(blank=True)
    backdrop = models.CharField(max_length=16, choices=BackdropKind.choices, default=BackdropKind.GENERATED)
    studio_fill = models.CharField(max_length=16, choices=StudioFill.choices, default=StudioFill.WHITE)
    studio_color = models.CharField(max_length=7, default="#ffffff")
    studio_color_2 = models.CharField(max_length=7, default="#e9e9e9")
    controlnet_scale = models.FloatField(default=0.7)
    steps = models.PositiveIntegerField(default=30)
    guidance = models.FloatField(default=6.0)
    scheduler = models.CharField(max_length=24, choices=Scheduler.choices, default=Scheduler.DPMPP_2M_KARRAS)
    shadow = models.CharField(max_length=16, choices=ShadowPreset.choices, default=ShadowPreset.SOFT)
    output_preset = models.CharField(
        max_length=24, choices=OutputPreset.choices, default=OutputPreset.SQUARE_1024
    )
    loras = models.ManyToManyField(
        Lora, through="StyleVersionLora", blank=True, related_name="style_versions"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["style", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["style", "number"], name="style_version_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.style.name} v{self.number}"

    def render_prompt(self, product: str) -> str:
        return self.prompt_template.replace("{product}", product.strip() or "product")


class StyleVersionLora(models.Model):
    style_version = models.ForeignKey(StyleVersion, on_delete=models.CASCADE, related_name="lora_links")
    lora = models.ForeignKey(Lora, on_delete=models.PROTECT, related_name="style_links")
    weight = models.FloatField(default=0.8)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["style_version", "lora"], name="style_version_lora_unique")
        ]

    def __str__(self) -> str:
        return f"{self.lora.name} @ {self.weight}"


class PreviewStatus(models.TextChoices):
    PENDING = "pending", "Rendering"
    SUCCEEDED = "succeeded", "Done"
    FAILED = "failed", "Failed"


class StylePreview(models.Model):
    """A style rendered on one reference product (mug, bottle, shoe) by the normal job queue.

    Made by the admin's preview action: ``job`` is a job of the internal previews merchant and
    ``variation_index`` the variation that renders this style. When it succeeds, ``image`` holds a
    small thumbnail of it; the newest finished preview on the first reference product also becomes
    ``Style.thumbnail``, the picture on the tile merchants pick the style from.
    """

    style = models.ForeignKey(Style, on_delete=models.CASCADE, related_name="previews")
    style_version = models.ForeignKey(StyleVersion, on_delete=models.CASCADE, related_name="+")
    product = models.CharField(max_length=16)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    variation_index = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=PreviewStatus.choices, default=PreviewStatus.PENDING)
    image = models.ImageField(upload_to="style-previews/", max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["style", "-created_at", "-id"]
        indexes = [models.Index(fields=["job", "variation_index"], name="style_preview_job_variation")]

    def __str__(self) -> str:
        return f"{self.style.name} on the {self.product} ({self.status})"
