"""Session fixtures for the engine tests: tiny models built once, one warm tiny engine, a tiny LoRA."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFilter

# Nothing in these tests may reach the network: every model is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gpu_runtime.engine import Engine, EngineConfig  # noqa: E402
from gpu_runtime.tiny import build_tiny_lora, ensure_tiny_models, tiny_unet_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_models(tmp_path_factory.mktemp("tiny") / "models")


@pytest.fixture(scope="session")
def engine(tiny_models_dir: Path) -> Iterator[Engine]:
    """The tiny engine, started and warmed up once; tests leave it with no LoRA active."""
    started = Engine.start(EngineConfig(kind="tiny", tiny_dir=tiny_models_dir))
    yield started
    started.close()


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-4 diffusers/PEFT LoRA for the tiny UNet's attention projections."""
    return build_tiny_lora(tmp_path_factory.mktemp("loras") / "style.safetensors", tiny_unet_config(), seed=1)


@pytest.fixture(scope="session")
def second_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another LoRA, in kohya-ss format, for switching between two."""
    return build_tiny_lora(
        tmp_path_factory.mktemp("loras") / "other.safetensors", tiny_unet_config(), seed=2, fmt="kohya"
    )


def make_product() -> Image.Image:
    """A synthetic product photo: a textured bottle with a label, alpha = a soft-edged cutout mask."""
    width, height = 240, 320
    photo = Image.new("RGB", (width, height), (201, 180, 150))
    draw = ImageDraw.Draw(photo)
    for y in range(40, 300):
        shade = 60 + (y * 7) % 90
        draw.line((70, y, 170, y), fill=(shade, 90 + (y % 40), 160 - (y % 60)))
    draw.rectangle((80, 150, 160, 210), fill=(245, 240, 225))
    draw.text((92, 170), "OLIVE", fill=(30, 60, 20))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rounded_rectangle((70, 40, 170, 300), radius=30, fill=255)
    # A soft rim, as a real cutout has: only its inside stays fully opaque.
    mask = mask.filter(ImageFilter.GaussianBlur(2))
    product = photo.convert("RGBA")
    product.putalpha(mask)
    return product


@pytest.fixture
def product() -> Image.Image:
    return make_product()
