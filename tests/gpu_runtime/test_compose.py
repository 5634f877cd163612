"""Placing, compositing, verifying and encoding mockups: the product comes out pixel-exact.

Products are synthetic photos made here: a textured bottle-like shape with a sharp-edged label inside
it, on a plain table-coloured background, with a hard-edged and a soft-edged cutout mask.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from gpu_runtime.compose import (
    PRESETS,
    TRAINED_ALGORITHMIC_MEDIA,
    OutputPreset,
    composite,
    encode_image,
    fidelity_max_delta,
    finish,
    generation_inputs,
    generation_size_for,
    place_product,
    preset_get,
    product_bbox,
    read_digital_source_type,
    render_product_layer,
    soft_shadow,
    studio_backdrop,
)

# A tiny EXIF block (Make = "Camera") as a phone would attach to the merchant's photo.
_EXIF = Image.Exif()
_EXIF[0x010F] = "Camera"
EXIF_BYTES = _EXIF.tobytes()


def make_product_photo(*, soft: bool, size: tuple[int, int] = (480, 360), seed: int = 7) -> Image.Image:
    """An RGBA product photo: textured teal body, orange label with a sharp inner edge, plain background."""
    width, height = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    photo = np.empty((height, width, 3), dtype=np.float64)
    photo[:] = (222, 218, 210)  # the table the product was shot on
    body = np.array((30, 140, 150), dtype=np.float64)
    stripes = 18 * np.sin(xx / 3.0)[..., None] + 10 * np.cos(yy / 5.0)[..., None]
    photo_body = body + stripes + rng.normal(0, 9, (height, width, 3))
    label = np.array((235, 120, 40), dtype=np.float64) + rng.normal(0, 6, (height, width, 3))

    mask = Image.new("L", size, 0)
    box = (int(width * 0.3), int(height * 0.1), int(width * 0.7), int(height * 0.9))
    ImageDraw.Draw(mask).rounded_rectangle(box, radius=int(width * 0.06), fill=255)
    inside = np.asarray(mask) > 0
    photo[inside] = photo_body[inside]
    label_zone = (xx > width * 0.36) & (xx < width * 0.64) & (yy > height * 0.4) & (yy < height * 0.6)
    photo[label_zone] = label[label_zone]

    if soft:
        mask = mask.filter(ImageFilter.GaussianBlur(3))
    product = Image.fromarray(np.clip(np.rint(photo), 0, 255).astype(np.uint8), "RGB")
    product.putalpha(mask)
    product.info["exif"] = EXIF_BYTES
    return product


def noisy_background(size: tuple[int, int], seed: int = 3) -> Image.Image:
    """Uniform random noise: the worst case for both blending mistakes and compression."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    image.info["exif"] = EXIF_BYTES
    return image


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def expected_placed_product(product: Image.Image, preset: OutputPreset) -> tuple[np.ndarray, tuple[int, ...]]:
    """The product resampled once, straight from the photo, to its box: computed here, not by compose."""
    alpha = np.asarray(product.getchannel("A"))
    rows, cols = np.nonzero(alpha > 8)
    bbox = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    placement = place_product(product, canvas=preset.size, fill=preset.product_fill, anchor=preset.anchor)
    x0, y0, x1, y1 = placement.box
    placed = product.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS, box=bbox)
    return np.asarray(placed, dtype=np.int16), placement.box


@pytest.fixture(scope="module")
def products() -> dict[str, Image.Image]:
    return {"hard": make_product_photo(soft=False), "soft": make_product_photo(soft=True)}


# -- pixel-exact product ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["hard", "soft"])
@pytest.mark.parametrize("fmt", ["png", "webp"])
@pytest.mark.parametrize("preset_name", sorted(PRESETS))
def test_the_product_comes_out_pixel_exact_in_every_preset_as_png_and_webp(
    preset_name: str, fmt: str, variant: str, products: dict[str, Image.Image]
) -> None:
    preset = PRESETS[preset_name]
    product = products[variant]
    result = finish(
        noisy_background(preset.generation_size), product, preset, shadow="soft", fmt=fmt, generated=True
    )

    assert result.fidelity_max_delta == 0
    assert (result.width, result.height) == preset.size

    decoded = decode(result.data)
    assert decoded.shape == (preset.height, preset.width, 3)
    placed, (x0, y0, x1, y1) = expected_placed_product(product, preset)
    opaque = placed[..., 3] == 255
    # The check must cover the product, not a handful of pixels: most of its box is opaque.
    assert opaque.sum() > 0.4 * opaque.size
    assert result.verified_pixels == opaque.sum()
    region = decoded[y0:y1, x0:x1]
    assert np.abs(region[opaque] - placed[..., :3][opaque]).max() == 0


def test_jpeg_reports_its_loss_honestly(products: dict[str, Image.Image]) -> None:
    preset = PRESETS["square_1024"]
    product = products["hard"]
    result = finish(
        noisy_background(preset.generation_size), product, preset, shadow="soft", fmt="jpeg", generated=True
    )

    placed, (x0, y0, x1, y1) = expected_placed_product(product, preset)
    opaque = placed[..., 3] == 255
    independent = int(np.abs(decode(result.data)[y0:y1, x0:x1][opaque] - placed[..., :3][opaque]).max())
    assert result.fidelity_max_delta > 0
    assert result.fidelity_max_delta == independent


def test_fidelity_notices_a_single_changed_product_pixel(products: dict[str, Image.Image]) -> None:
    preset = PRESETS["square_1024"]
    result = composite(noisy_background((256, 256)), products["hard"], preset, shadow="none")
    pixels = np.array(result.image)
    alpha = np.asarray(result.product_layer.getchannel("A"))
    y, x = np.argwhere(alpha == 255)[len(np.argwhere(alpha == 255)) // 2]
    pixels[y, x, 1] = pixels[y, x, 1] + 3 if pixels[y, x, 1] < 200 else pixels[y, x, 1] - 3
    tampered = encode_image(Image.fromarray(pixels), fmt="png", generated=False)

    assert (
        fidelity_max_delta(encode_image(result.image, fmt="png", generated=False), result.product_layer) == 0
    )
    assert fidelity_max_delta(tampered, result.product_layer) == 3


def test_the_product_layer_is_resampled_once_from_the_original_photo(
    products: dict[str, Image.Image],
) -> None:
    preset = PRESETS["landscape_16_9"]
    product = products["soft"]
    result = composite(noisy_background(preset.generation_size), product, preset)
    placed, (x0, y0, x1, y1) = expected_placed_product(product, preset)

    layer = np.asarray(result.product_layer, dtype=np.int16)
    assert np.array_equal(layer[y0:y1, x0:x1], placed)
    outside = np.ones(layer.shape[:2], dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert not layer[outside].any()


# -- marketplace, backdrops, shadows -----------------------------------------------------------------


def test_the_marketplace_image_is_2000_square_pure_white_with_a_centred_product_filling_85_percent(
    products: dict[str, Image.Image],
) -> None:
    preset = preset_get("marketplace_2000")
    result = composite(noisy_background((1024, 1024)), products["hard"], preset, shadow="soft")

    assert result.image.size == (2000, 2000)
    pixels = np.asarray(result.image)
    alpha = np.asarray(result.product_layer.getchannel("A"))
    shadow = np.asarray(soft_shadow(result.product_layer))
    outside = (alpha == 0) & (shadow == 0)
    assert outside.mean() > 0.2
    assert (pixels[outside] == 255).all()

    x0, y0, x1, y1 = result.placement.box
    assert max(x1 - x0, y1 - y0) >= 0.85 * 2000
    assert abs((x0 + x1) / 2 - 1000) <= 1
    assert abs((y0 + y1) / 2 - 1000) <= 1


def test_without_a_shadow_the_marketplace_background_is_white_everywhere_but_the_product(
    products: dict[str, Image.Image],
) -> None:
    result = composite(
        noisy_background((64, 64)), products["soft"], PRESETS["marketplace_2000"], shadow="none"
    )
    alpha = np.asarray(result.product_layer.getchannel("A"))
    assert (np.asarray(result.image)[alpha == 0] == 255).all()


def test_a_white_studio_backdrop_is_exactly_255_outside_the_product_and_its_shadow(
    products: dict[str, Image.Image],
) -> None:
    preset = PRESETS["portrait_4_5"]
    backdrop = studio_backdrop(preset.size, fill="white")
    result = finish(backdrop, products["soft"], preset, shadow="soft", fmt="png", generated=False)

    layer = render_product_layer(
        products["soft"],
        place_product(products["soft"], canvas=preset.size, fill=preset.product_fill, anchor=preset.anchor),
    )
    alpha = np.asarray(layer.getchannel("A"))
    shadow = np.asarray(soft_shadow(layer))
    outside = (alpha == 0) & (shadow == 0)
    assert outside.mean() > 0.3
    assert (decode(result.data)[outside] == 255).all()
    assert result.fidelity_max_delta == 0


def test_a_solid_backdrop_is_the_first_colour_everywhere() -> None:
    backdrop = np.asarray(studio_backdrop((90, 60), fill="solid", colors=("#1e90ff", "#000000")))
    assert (backdrop == (0x1E, 0x90, 0xFF)).all()


def test_a_gradient_backdrop_runs_from_the_first_colour_to_the_second() -> None:
    backdrop = np.asarray(
        studio_backdrop((300, 500), fill="gradient", colors=("#ffffff", "#b0a090")), dtype=int
    )

    assert (backdrop[0] == (255, 255, 255)).all()
    assert (backdrop[-1] == (0xB0, 0xA0, 0x90)).all()
    row_means = backdrop.mean(axis=1)
    # Darker row after row (dithering may wiggle a row's mean by a fraction of a level, never more).
    assert (np.diff(row_means, axis=0) <= 0.5).all()
    assert row_means[len(row_means) // 2, 0] < 250


def test_a_short_hex_colour_is_accepted() -> None:
    assert np.asarray(studio_backdrop((4, 4), fill="solid", colors=("#abc", "#fff")))[0, 0].tolist() == [
        0xAA,
        0xBB,
        0xCC,
    ]


@pytest.mark.parametrize("colour", ["red", "#12345", "#ggg000", "ffffff", "#1234567", ""])
def test_a_bad_hex_colour_is_a_clear_error(colour: str) -> None:
    with pytest.raises(ValueError, match="is not a hex colour"):
        studio_backdrop((10, 10), fill="gradient", colors=(colour, "#ffffff"))


def test_an_unknown_backdrop_fill_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Unknown backdrop fill"):
        studio_backdrop((10, 10), fill="marble")


def test_a_soft_shadow_darkens_the_floor_under_the_product_and_not_the_top_of_the_frame(
    products: dict[str, Image.Image],
) -> None:
    preset = PRESETS["square_1024"]
    backdrop = studio_backdrop(preset.size, fill="white")
    with_shadow = composite(backdrop, products["hard"], preset, shadow="soft")
    without = composite(backdrop, products["hard"], preset, shadow="none")
    lit = np.asarray(without.image, dtype=int)
    shaded = np.asarray(with_shadow.image, dtype=int)
    x0, y0, x1, y1 = with_shadow.placement.box

    just_below = (slice(y1 + 1, y1 + 6), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4))
    assert (lit[just_below] == 255).all()
    assert shaded[just_below].mean() < 245
    top = (slice(0, y0 // 2), slice(None))
    assert np.array_equal(shaded[top], lit[top])
    assert not np.asarray(soft_shadow(with_shadow.product_layer))[: y0 // 2].any()


def test_a_shadow_never_touches_the_product_pixels(products: dict[str, Image.Image]) -> None:
    preset = PRESETS["square_1024"]
    result = composite(studio_backdrop(preset.size, fill="white"), products["hard"], preset, shadow="soft")
    layer = np.asarray(result.product_layer)
    opaque = layer[..., 3] == 255
    assert np.array_equal(np.asarray(result.image)[opaque], layer[..., :3][opaque])


# -- inputs for the diffusion step -----------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.125, 1.0])
@pytest.mark.parametrize("preset_name", sorted(PRESETS))
def test_generation_inputs_keep_the_product_and_regenerate_far_from_it(
    preset_name: str, scale: float, products: dict[str, Image.Image]
) -> None:
    preset = PRESETS[preset_name]
    size = generation_size_for(preset, scale=scale)
    inputs = generation_inputs(products["soft"], preset, size)

    assert size[0] % 8 == 0 and size[1] % 8 == 0
    for image, mode in (
        (inputs.init_image, "RGB"),
        (inputs.inpaint_mask, "L"),
        (inputs.product_layer, "RGBA"),
    ):
        assert image.size == size
        assert image.mode == mode
    alpha = inputs.product_layer.getchannel("A")
    mask = np.asarray(inputs.inpaint_mask)
    deep_inside = np.asarray(alpha.filter(ImageFilter.MinFilter(2 * max(2, size[0] // 64) + 1))) == 255
    far_away = np.asarray(alpha.filter(ImageFilter.MaxFilter(9))) == 0
    assert deep_inside.any() and far_away.any()
    assert (mask[deep_inside] == 0).all()
    assert (mask[far_away] == 255).all()
    assert set(np.unique(mask).tolist()) == {0, 255}

    init = np.asarray(inputs.init_image)
    layer = np.asarray(inputs.product_layer)
    opaque = layer[..., 3] == 255
    assert np.array_equal(init[opaque], layer[..., :3][opaque])
    assert (init[layer[..., 3] == 0] == 128).all()


def test_generation_inputs_refuse_a_size_the_vae_cannot_take(products: dict[str, Image.Image]) -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        generation_inputs(products["hard"], PRESETS["square_1024"], (100, 100))


def test_generation_sizes_scale_the_sdxl_size_to_multiples_of_8_with_a_floor_of_64_pixels() -> None:
    assert generation_size_for(PRESETS["square_1024"], scale=0.125) == (128, 128)
    assert generation_size_for(PRESETS["portrait_4_5"]) == (896, 1120)
    assert generation_size_for(PRESETS["landscape_16_9"], scale=0.01) == (64, 64)
    for preset in PRESETS.values():
        width, height = preset.generation_size
        assert width % 32 == 0 and height % 32 == 0
        assert 0.85e6 <= width * height <= 1.1e6
        assert abs(width / height - preset.width / preset.height) / (preset.width / preset.height) < 0.02
        for scale in (0.125, 0.25, 0.5, 1.0):
            scaled = generation_size_for(preset, scale=scale)
            assert scaled[0] % 8 == 0 and scaled[1] % 8 == 0


# -- placement -----------------------------------------------------------------------------------


def test_a_tall_product_fills_the_height_and_rests_on_the_floor(products: dict[str, Image.Image]) -> None:
    floor = place_product(products["hard"], canvas=(1000, 1000), fill=0.7, anchor="floor")
    centre = place_product(products["hard"], canvas=(1000, 1000), fill=0.7, anchor="center")

    x0, y0, x1, y1 = floor.box
    assert y1 - y0 == 700
    assert abs((x0 + x1) / 2 - 500) <= 1
    assert 0 < 1000 - y1 < y0
    cx0, cy0, cx1, cy1 = centre.box
    assert (cx1 - cx0, cy1 - cy0) == (x1 - x0, y1 - y0)
    assert abs(cy0 - (1000 - cy1)) <= 1


def test_a_wide_product_fits_a_portrait_frame_by_its_width() -> None:
    wide = Image.new("RGBA", (400, 100), (10, 20, 30, 255))
    x0, y0, x1, y1 = place_product(wide, canvas=(800, 1000), fill=0.75).box
    assert x1 - x0 == 600
    assert y1 - y0 == 150


# -- metadata ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_generated_images_carry_the_iptc_ai_marker_and_studio_ones_do_not(
    fmt: str, products: dict[str, Image.Image]
) -> None:
    preset = PRESETS["square_1024"]
    generated = finish(
        noisy_background((128, 128)), products["hard"], preset, shadow="soft", fmt=fmt, generated=True
    )
    studio = finish(
        studio_backdrop(preset.size, fill="gradient"),
        products["hard"],
        preset,
        shadow="soft",
        fmt=fmt,
        generated=False,
    )

    assert read_digital_source_type(generated.data) == TRAINED_ALGORITHMIC_MEDIA
    assert b"Iptc4xmpExt:DigitalSourceType" in generated.data
    assert read_digital_source_type(studio.data) is None
    assert b"DigitalSourceType" not in studio.data
    assert b"xmpmeta" not in studio.data


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("generated", [True, False])
def test_outputs_carry_no_exif_or_profile_even_when_the_photo_had_them(
    fmt: str, generated: bool, products: dict[str, Image.Image]
) -> None:
    preset = PRESETS["square_1024"]
    background = noisy_background((128, 128))
    background.info["icc_profile"] = b"not really a profile"
    result = finish(background, products["hard"], preset, shadow="none", fmt=fmt, generated=generated)

    with Image.open(io.BytesIO(result.data)) as image:
        assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
        assert len(image.getexif()) == 0
        assert "exif" not in image.info
        assert "icc_profile" not in image.info
    assert b"Camera" not in result.data
    assert b"Exif\x00\x00" not in result.data
    assert b"eXIf" not in result.data


def test_the_marker_is_read_from_an_element_written_by_another_tool() -> None:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        "<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
        "</Iptc4xmpExt:DigitalSourceType></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", xmp=xmp.encode())
    assert read_digital_source_type(buffer.getvalue()) == (
        "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
    )


def test_reading_the_marker_from_something_that_is_not_an_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a PNG, JPEG or WebP"):
        read_digital_source_type(b"GIF89a not what we write")


def test_lossy_webp_is_only_used_when_asked_for(products: dict[str, Image.Image]) -> None:
    result = composite(noisy_background((128, 128)), products["hard"], PRESETS["square_1024"])
    lossless = encode_image(result.image, fmt="webp", generated=False, quality=60)
    lossy = encode_image(result.image, fmt="webp", generated=False, quality=60, lossless=False)
    assert fidelity_max_delta(lossless, result.product_layer) == 0
    assert fidelity_max_delta(lossy, result.product_layer) > 0


# -- clear errors ----------------------------------------------------------------------------------


def test_an_unknown_preset_is_a_clear_error_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="Unknown output preset 'banner'.*landscape_16_9.*square_1024"):
        preset_get("banner")
    assert preset_get("portrait_4_5").size == (1080, 1350)


def test_an_empty_cutout_is_a_clear_error() -> None:
    empty = Image.new("RGBA", (64, 64), (200, 10, 10, 0))
    faint = Image.new("RGBA", (64, 64), (200, 10, 10, 8))
    for product in (empty, faint):
        with pytest.raises(ValueError, match="The cutout is empty"):
            product_bbox(product)
        with pytest.raises(ValueError, match="The cutout is empty"):
            finish(
                Image.new("RGB", (64, 64)),
                product,
                PRESETS["square_1024"],
                shadow="soft",
                fmt="png",
                generated=True,
            )


def test_a_photo_without_a_cutout_mask_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be an RGBA image"):
        place_product(Image.new("RGB", (64, 64)), canvas=(128, 128), fill=0.7)


def test_an_unknown_format_or_shadow_is_a_clear_error(products: dict[str, Image.Image]) -> None:
    with pytest.raises(ValueError, match="Unknown image format 'gif'"):
        encode_image(Image.new("RGB", (8, 8)), fmt="gif", generated=False)
    with pytest.raises(ValueError, match="Unknown shadow 'hard'"):
        finish(
            Image.new("RGB", (8, 8)),
            products["hard"],
            PRESETS["square_1024"],
            shadow="hard",
            fmt="png",
            generated=False,
        )
