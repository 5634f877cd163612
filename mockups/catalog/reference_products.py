"""Reference products the style previews are rendered on: a mug, a bottle and a shoe.

Drawn here with Pillow as simple shaded shapes, so no photo or model file is needed and every
installation previews its styles on the same products. Each image is RGBA with an exact alpha:
0 on the background, 255 on the product, nothing in between (no anti-aliasing), so the product's
edge is known to the pixel. The drawing is deterministic: the same size always gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ReferenceProduct:
    key: str
    label: str
    # What goes in place of {product} in a style's prompt template.
    product_name: str


MUG = ReferenceProduct("mug", "Mug", "a white ceramic coffee mug")
BOTTLE = ReferenceProduct("bottle", "Bottle", "a green glass bottle")
SHOE = ReferenceProduct("shoe", "Shoe", "a red canvas sneaker")

# In this order; the first one's preview becomes the style's tile thumbnail.
REFERENCE_PRODUCTS: tuple[ReferenceProduct, ...] = (MUG, BOTTLE, SHOE)
REFERENCE_PRODUCT_KEYS: tuple[str, ...] = tuple(product.key for product in REFERENCE_PRODUCTS)
DEFAULT_SIZE = 768


def reference_product_get(key: str) -> ReferenceProduct:
    for product in REFERENCE_PRODUCTS:
        if product.key == key:
            return product
    raise KeyError(f"Unknown reference product {key!r}; known: {', '.join(REFERENCE_PRODUCT_KEYS)}.")


def _scaled(box: tuple[float, float, float, float], size: int) -> Box:
    """A box given in fractions of the canvas, in whole pixels."""
    return (round(box[0] * size), round(box[1] * size), round(box[2] * size), round(box[3] * size))


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return (
        max(0, min(255, round(color[0] * factor))),
        max(0, min(255, round(color[1] * factor))),
        max(0, min(255, round(color[2] * factor))),
    )


def _cylinder_fill(draw: ImageDraw.ImageDraw, box: Box, color: tuple[int, int, int]) -> None:
    """Vertical bands lighter in the middle: a cylinder lit from the front, in flat colour steps."""
    left, top, right, bottom = box
    width = max(1, right - left)
    for x in range(left, right):
        t = (x - left) / width  # 0..1 across the body
        factor = 0.72 + 0.38 * (1.0 - abs(t - 0.42) * 2.0)
        draw.line([(x, top), (x, bottom)], fill=_shade(color, factor))


def _draw_mug(size: int) -> tuple[Image.Image, Image.Image]:
    color = (236, 233, 226)
    rgb = Image.new("RGB", (size, size), (0, 0, 0))
    mask = Image.new("L", (size, size), 0)
    paint, cut = ImageDraw.Draw(rgb), ImageDraw.Draw(mask)
    body = _scaled((0.24, 0.30, 0.66, 0.80), size)
    rim = _scaled((0.24, 0.26, 0.66, 0.34), size)
    base = _scaled((0.24, 0.76, 0.66, 0.84), size)
    handle_outer = _scaled((0.56, 0.38, 0.84, 0.70), size)
    handle_inner = _scaled((0.63, 0.45, 0.77, 0.63), size)
    # Handle first, so the body covers its inner end.
    paint.ellipse(handle_outer, fill=_shade(color, 0.86))
    cut.ellipse(handle_outer, fill=255)
    paint.ellipse(handle_inner, fill=(0, 0, 0))
    cut.ellipse(handle_inner, fill=0)
    _cylinder_fill(paint, body, color)
    cut.rectangle(body, fill=255)
    paint.ellipse(base, fill=_shade(color, 0.8))
    cut.ellipse(base, fill=255)
    paint.ellipse(rim, fill=_shade(color, 1.05))
    cut.ellipse(rim, fill=255)
    inner = _scaled((0.27, 0.275, 0.63, 0.325), size)
    paint.ellipse(inner, fill=(92, 62, 40))  # coffee
    return rgb, mask


def _draw_bottle(size: int) -> tuple[Image.Image, Image.Image]:
    color = (46, 120, 74)
    rgb = Image.new("RGB", (size, size), (0, 0, 0))
    mask = Image.new("L", (size, size), 0)
    paint, cut = ImageDraw.Draw(rgb), ImageDraw.Draw(mask)
    body = _scaled((0.36, 0.40, 0.64, 0.88), size)
    shoulder = _scaled((0.36, 0.30, 0.64, 0.50), size)
    neck = _scaled((0.45, 0.16, 0.55, 0.36), size)
    cap = _scaled((0.44, 0.10, 0.56, 0.18), size)
    label = _scaled((0.36, 0.55, 0.64, 0.72), size)
    paint.ellipse(shoulder, fill=_shade(color, 0.95))
    cut.ellipse(shoulder, fill=255)
    _cylinder_fill(paint, body, color)
    cut.rectangle(body, fill=255)
    _cylinder_fill(paint, neck, color)
    cut.rectangle(neck, fill=255)
    _cylinder_fill(paint, cap, (200, 170, 60))
    cut.rectangle(cap, fill=255)
    _cylinder_fill(paint, label, (240, 236, 220))
    return rgb, mask


def _draw_shoe(size: int) -> tuple[Image.Image, Image.Image]:
    color = (196, 44, 48)
    rgb = Image.new("RGB", (size, size), (0, 0, 0))
    mask = Image.new("L", (size, size), 0)
    paint, cut = ImageDraw.Draw(rgb), ImageDraw.Draw(mask)

    def polygon(points: list[tuple[float, float]], fill: tuple[int, int, int]) -> None:
        pixels = [(round(x * size), round(y * size)) for x, y in points]
        paint.polygon(pixels, fill=fill)
        cut.polygon(pixels, fill=255)

    # Upper: heel on the left, toe on the right.
    polygon(
        [(0.12, 0.40), (0.30, 0.36), (0.44, 0.46), (0.70, 0.52), (0.86, 0.58), (0.90, 0.66), (0.12, 0.66)],
        color,
    )
    polygon([(0.12, 0.40), (0.30, 0.36), (0.33, 0.44), (0.14, 0.48)], _shade(color, 0.8))  # collar
    polygon([(0.68, 0.55), (0.86, 0.58), (0.90, 0.66), (0.66, 0.66)], (236, 232, 222))  # toe cap
    sole = _scaled((0.10, 0.65, 0.92, 0.74), size)
    paint.rectangle(sole, fill=(245, 243, 238))
    cut.rectangle(sole, fill=255)
    for i in range(4):  # laces
        x = 0.40 + i * 0.065
        start = (round(x * size), round((0.45 + i * 0.015) * size))
        paint.line(
            [start, (round((x + 0.05) * size), round(0.60 * size))],
            fill=(250, 250, 250),
            width=max(1, size // 120),
        )
    # The laces were painted inside the upper, whose mask already covers them.
    return rgb, mask


_DRAWERS: dict[str, Callable[[int], tuple[Image.Image, Image.Image]]] = {
    "mug": _draw_mug,
    "bottle": _draw_bottle,
    "shoe": _draw_shoe,
}


def reference_product_image(key: str, *, size: int = DEFAULT_SIZE) -> Image.Image:
    """The product ``key`` drawn on a ``size`` x ``size`` RGBA canvas, alpha exactly 0 or 255."""
    reference_product_get(key)
    if size < 64:
        raise ValueError("Reference products are drawn at 64 pixels or more.")
    rgb, mask = _DRAWERS[key](size)
    # Where the mask is 0 the colour is irrelevant; keep it black so the PNG stays small and exact.
    image = Image.composite(rgb, Image.new("RGB", (size, size), (0, 0, 0)), mask).convert("RGBA")
    image.putalpha(mask)
    return image


def reference_product_png(key: str, *, size: int = DEFAULT_SIZE) -> bytes:
    buffer = io.BytesIO()
    reference_product_image(key, size=size).save(buffer, format="PNG")
    return buffer.getvalue()
