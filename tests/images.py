"""Test images made on the spot: synthetic product photos and the odd files an upload door meets.

Nothing here is downloaded. Product photos are drawn with known shapes, so a cutout can be
scored against the truth (``SyntheticPhoto.mask``). The file builders write the exact bytes a
test needs (a PNG that only claims to be huge, a 16-bit PNG, an APNG, a CMYK JPEG...) cheaply.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image

ProductKind = Literal["bottle", "jar", "mug"]
PRODUCT_KINDS: tuple[ProductKind, ...] = ("bottle", "jar", "mug")


@dataclass(frozen=True)
class SyntheticPhoto:
    """A product photo and the truth about it: ``mask`` is True where the product is (pixel coverage >= 50%)."""

    image: Image.Image
    mask: np.ndarray
    kind: str


def studio_background(
    width: int,
    height: int,
    *,
    seed: int = 0,
    tone: tuple[int, int, int] = (238, 237, 233),
    noise: float = 2.5,
) -> np.ndarray:
    """A light seamless studio backdrop: top-to-bottom gradient, mild vignette and sensor noise (float32 HxWx3)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    light = 1.03 - 0.07 * y - 0.03 * (x**2) * (0.5 + y)
    background = light[..., None] * np.asarray(tone, dtype=np.float32)[None, None, :]
    background += rng.normal(0.0, noise, size=(height, width, 1)).astype(np.float32)
    return background


def _coverage(draw: Any, width: int, height: int, supersample: int) -> np.ndarray:
    """Anti-aliased coverage (0..1) of shapes drawn by ``draw(canvas, scale)`` on a supersampled canvas."""
    canvas = np.zeros((height * supersample, width * supersample), dtype=np.uint8)
    draw(canvas, supersample)
    if supersample == 1:
        return canvas.astype(np.float32) / 255.0
    small = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def _rounded_rect(canvas: np.ndarray, x0: float, y0: float, x1: float, y1: float, r: float) -> None:
    x0i, y0i, x1i, y1i, ri = (round(v) for v in (x0, y0, x1, y1, r))
    cv2.rectangle(canvas, (x0i + ri, y0i), (x1i - ri, y1i), 255, -1)
    cv2.rectangle(canvas, (x0i, y0i + ri), (x1i, y1i - ri), 255, -1)
    for cx, cy in ((x0i + ri, y0i + ri), (x1i - ri, y0i + ri), (x0i + ri, y1i - ri), (x1i - ri, y1i - ri)):
        cv2.circle(canvas, (cx, cy), ri, 255, -1)


def _cylinder_shading(width: int, left: float, right: float) -> np.ndarray:
    """Brightness across a cylinder lit from the front-left: darker at both sides, a highlight near the left."""
    x = (np.arange(width, dtype=np.float32) - left) / max(right - left, 1.0)
    x = np.clip(x, 0.0, 1.0)
    shade = 0.55 + 0.45 * np.sin(np.pi * x) + 0.25 * np.exp(-(((x - 0.3) / 0.05) ** 2))
    return shade[None, :, None]


def _product_layers(
    kind: ProductKind, width: int, height: int, supersample: int
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Return (coverage, colour image, (shadow centre x, shadow y, shadow half-width)) for one product."""
    u = min(width, height) / 100.0  # one "unit": the drawing scales with the image
    cx, cy = width / 2.0, height / 2.0
    colour = np.zeros((height, width, 3), dtype=np.float32)
    yy = np.arange(height, dtype=np.float32)[:, None]

    if kind == "bottle":
        left, right, top, bottom = cx - 16 * u, cx + 16 * u, cy - 18 * u, cy + 40 * u

        def draw(c: np.ndarray, s: int) -> None:
            _rounded_rect(c, s * left, s * top, s * right, s * bottom, s * 7 * u)
            _rounded_rect(
                c, s * (cx - 6 * u), s * (cy - 38 * u), s * (cx + 6 * u), s * (top + 4 * u), s * 2 * u
            )
            _rounded_rect(
                c, s * (cx - 7 * u), s * (cy - 45 * u), s * (cx + 7 * u), s * (cy - 36 * u), s * 1.5 * u
            )

        glass = np.asarray((30, 96, 52), dtype=np.float32)
        colour[:] = glass * _cylinder_shading(width, left, right)
        label = (yy > cy + 2 * u) & (yy < cy + 24 * u)
        label_colour = np.asarray((246, 224, 150), dtype=np.float32) * _cylinder_shading(width, left, right)
        colour = np.where(label[..., None], np.minimum(label_colour, 250.0), colour)
        stripe = (yy > cy + 10 * u) & (yy < cy + 13 * u)  # printed band on the label: an inner edge
        colour = np.where(stripe[..., None], colour * 0.35, colour)
        cap = yy < cy - 36 * u
        colour = np.where(cap[..., None], np.asarray((150, 28, 36), dtype=np.float32), colour)
        shadow = (cx, bottom, 20 * u)
    elif kind == "jar":
        left, right, top, bottom = cx - 30 * u, cx + 30 * u, cy - 10 * u, cy + 28 * u

        def draw(c: np.ndarray, s: int) -> None:
            _rounded_rect(c, s * left, s * top, s * right, s * bottom, s * 8 * u)
            _rounded_rect(
                c, s * (left - 2 * u), s * (cy - 24 * u), s * (right + 2 * u), s * (top + 2 * u), s * 4 * u
            )

        body = np.asarray((222, 110, 96), dtype=np.float32)
        lid = np.asarray((176, 140, 60), dtype=np.float32)
        colour[:] = body * _cylinder_shading(width, left, right)
        lid_rows = yy < top + 2 * u
        colour = np.where(
            lid_rows[..., None], lid * _cylinder_shading(width, left - 2 * u, right + 2 * u), colour
        )
        shadow = (cx, bottom, 34 * u)
    elif kind == "mug":
        left, right, top, bottom = cx - 24 * u, cx + 14 * u, cy - 24 * u, cy + 26 * u
        handle_cx, handle_cy = right, cy

        def draw(c: np.ndarray, s: int) -> None:
            _rounded_rect(c, s * left, s * top, s * right, s * bottom, s * 4 * u)
            # The handle is a ring: the hole through it shows the backdrop and must stay background.
            cv2.ellipse(
                c,
                (round(s * handle_cx), round(s * handle_cy)),
                (round(s * 14 * u), round(s * 15 * u)),
                0,
                -90,
                90,
                255,
                thickness=round(s * 6 * u),
            )

        ceramic = np.asarray((54, 92, 170), dtype=np.float32)
        colour[:] = ceramic * _cylinder_shading(width, left, right + 16 * u)
        rim = yy < top + 3 * u
        colour = np.where(rim[..., None], colour * 1.25, colour)
        shadow = (cx - 4 * u, bottom, 30 * u)
    else:
        raise ValueError(f"unknown product kind {kind!r}; choose one of {PRODUCT_KINDS}")

    coverage = _coverage(draw, width, height, supersample)
    return coverage, colour, shadow


def product_photo(
    kind: ProductKind = "bottle",
    *,
    width: int = 640,
    height: int = 480,
    seed: int = 0,
    shadow: bool = True,
    supersample: int | None = None,
) -> SyntheticPhoto:
    """A product on a light studio backdrop with gradient, noise, a soft contact shadow and textured surfaces.

    The product has shading, a specular highlight, fine texture and inner edges (a label,
    a lid, a rim), so a cutout has to keep light and dark parts of the product together.
    ``supersample`` defaults to 4 for small images and 1 above 2 megapixels (cheap 12 MP images).
    """
    rng = np.random.default_rng(seed + 1000)
    if supersample is None:
        supersample = 4 if width * height <= 2_000_000 else 1
    background = studio_background(width, height, seed=seed)
    coverage, colour, (shadow_x, shadow_y, shadow_w) = _product_layers(kind, width, height, supersample)
    if shadow:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        distance = ((xx - shadow_x) / shadow_w) ** 2 + ((yy - shadow_y) / (0.18 * shadow_w)) ** 2
        background *= (1.0 - 0.22 * np.exp(-distance * 2.0))[..., None]
    texture = rng.normal(0.0, 4.0, size=(height, width, 1)).astype(np.float32)
    grain = cv2.GaussianBlur(rng.normal(0.0, 6.0, size=(height, width)).astype(np.float32), (0, 0), 3)
    colour = colour + texture + grain[..., None]
    alpha = coverage[..., None]
    pixels = background * (1.0 - alpha) + colour * alpha
    image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    return SyntheticPhoto(image=image, mask=coverage >= 0.5, kind=kind)


def blank_studio_photo(*, width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    """The backdrop alone: no product at all."""
    pixels = studio_background(width, height, seed=seed)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def busy_photo(*, width: int = 640, height: int = 480, seed: int = 3) -> Image.Image:
    """No studio backdrop at all: blotchy colours and dozens of overlapping coloured boxes."""
    rng = np.random.default_rng(seed)
    blotches = cv2.GaussianBlur((rng.random((height, width, 3)) * 255).astype(np.uint8), (0, 0), 6)
    low, high = float(blotches.min()), float(blotches.max())
    pixels = ((blotches - low) / max(high - low, 1.0) * 255).astype(np.uint8)
    for _ in range(40):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, 150)), int(rng.integers(20, 150))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(pixels, (x, y), (x + w, y + h), colour, -1)
    return Image.fromarray(pixels, mode="RGB")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# --- encoded files ---------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    """``image`` saved in ``fmt`` (Pillow format name) with save parameters ``params``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def exif_with_orientation(orientation: int, **tags: Any) -> bytes:
    """EXIF bytes with the Orientation tag (0x0112) and any extra tags given by number."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    for tag, value in tags.items():
        exif[int(tag.removeprefix("tag_"), 16)] = value
    return exif.tobytes()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny, well-formed-looking PNG whose header declares ``width`` x ``height`` pixels (a bomb's header).

    The image data is one compressed empty row: enough for any reader that trusts the header.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * (1 + (width + 7) // 8)))
        + png_chunk(b"IEND", b"")
    )


def png16(pixels: np.ndarray, *, extra_chunks: bytes = b"") -> bytes:
    """A 16-bit PNG from a uint16 array: HxW greyscale, HxWx2 grey+alpha, HxWx3 RGB or HxWx4 RGBA."""
    if pixels.dtype != np.uint16:
        raise TypeError("png16 takes a uint16 array")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, width * channels).astype(">u2").tobytes()
    stride = width * channels * 2
    raw = b"".join(b"\x00" + rows[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + extra_chunks
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def animated(fmt: str, *, size: tuple[int, int] = (96, 96), frames: int = 3) -> bytes:
    """An animated file (``fmt`` is "PNG" for APNG, "WEBP" or "GIF") with ``frames`` differently coloured frames."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    images = [Image.new("RGB", size, colours[i % len(colours)]) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=100, loop=0)


SVG_DRAWING = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400">'
    b'<circle cx="200" cy="200" r="150" fill="teal"/></svg>\n'
)


def jpeg_photo(*, width: int = 320, height: int = 240, quality: int = 90, **params: Any) -> bytes:
    """A small synthetic product photo as JPEG."""
    return encode(
        product_photo("bottle", width=width, height=height).image, "JPEG", quality=quality, **params
    )


def srgb_icc_profile() -> bytes:
    """An sRGB ICC profile made by LittleCMS (for files that carry a profile)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _s15fixed16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _icc_tag_xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15fixed16(x) + _s15fixed16(y) + _s15fixed16(z)


def linear_rgb_icc_profile(description: str = "Linear RGB (test)") -> bytes:
    """An ICC v2 display profile with sRGB primaries and a linear (gamma 1.0) tone curve.

    Written by hand because LittleCMS, through Pillow, only creates sRGB. Converting from it to
    sRGB visibly changes values (linear 128 becomes about 188), so a test can see the
    conversion happen.
    """
    text = description.encode("ascii") + b"\x00"
    # textDescriptionType: ASCII part, then empty Unicode (language + count) and ScriptCode parts.
    desc = b"desc\x00\x00\x00\x00" + struct.pack(">I", len(text)) + text + b"\x00" * (4 + 4 + 3 + 67)
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">I", 1) + struct.pack(">H", 0x0100)
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", desc),
        (b"wtpt", _icc_tag_xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _icc_tag_xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", _icc_tag_xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", _icc_tag_xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\x00\x00\x00\x00No copyright, test data.\x00"),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    body = b""
    for signature, payload in tags:
        padded = payload + b"\x00" * (-len(payload) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(payload))
        body += padded
    size = 128 + table_size + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\x00" * 24
        + struct.pack(">I", 0)
        + _s15fixed16(0.9642)
        + _s15fixed16(1.0)
        + _s15fixed16(0.8249)
        + b"\x00" * 4
        + b"\x00" * 44
    )
    assert len(header) == 128
    return header + table + body


def png_chunk_types(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order (to prove what metadata it carries)."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    kinds: list[str] = []
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        kinds.append(kind.decode("latin-1"))
        position += 12 + length
    return kinds
