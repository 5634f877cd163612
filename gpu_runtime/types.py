"""Plain data the engine takes and returns: no torch, no Django, safe to pickle and to log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PIL import Image

SchedulerName = Literal["euler_a", "euler", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc"]


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to apply: ``sha256`` is the catalog's hash of the file ("" = compute it from the file)."""

    name: str
    path: str
    sha256: str
    weight: float = 0.8


@dataclass(frozen=True)
class VariationSpec:
    """One of a job's variations. ``seed`` alone decides its noise: same inputs + seed = same image."""

    index: int
    seed: int
    prompt: str
    negative_prompt: str = ""
    loras: tuple[LoraSpec, ...] = ()
    backdrop: Literal["generated", "studio"] = "generated"
    studio_fill: Literal["white", "solid", "gradient"] = "white"
    studio_colors: tuple[str, str] = ("#ffffff", "#e9e9e9")
    shadow: Literal["none", "soft"] = "soft"
    controlnet_scale: float = 0.7
    steps: int = 30
    guidance: float = 6.0
    scheduler: str = "dpmpp_2m_karras"
    output_preset: str = "square_1024"
    output_format: Literal["png", "jpeg", "webp"] = "png"


@dataclass
class GenerateRequest:
    """A job for the engine: the original product photo (alpha = cutout mask) and 1..8 variations.

    ``size`` overrides the generation size of every generated variation (64..1536 per side, a
    multiple of 8); by default each output preset decides it.
    """

    product_rgba: Image.Image
    variations: list[VariationSpec]
    size: tuple[int, int] | None = None


@dataclass
class StepEvent:
    """Denoising step ``step`` of ``steps`` (1-based) finished for the variations in ``indices``."""

    indices: tuple[int, ...]
    step: int
    steps: int


@dataclass
class VariationResult:
    """A finished, encoded variation.

    ``fidelity_max_delta`` is the largest channel difference between output and original on fully
    opaque product pixels, measured on the decoded bytes (0 = pixel exact). ``gpu_seconds`` is this
    variation's share of its batch's wall time on the accelerator (0 for studio backdrops).
    """

    index: int
    seed: int
    data: bytes
    fmt: str
    width: int
    height: int
    fidelity_max_delta: int
    gpu_seconds: float
    backdrop: str


Event = StepEvent | VariationResult
