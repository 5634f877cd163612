"""Image intake: bad files are refused with their own code and a useful message; odd-but-valid ones normalised.

No Django needed: intake is plain Python and Pillow; limits come in as arguments.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from mockups.jobs.intake import MIB, ImageRejected, IntakeLimits, image_validate
from tests.images import (
    PNG_SIGNATURE,
    SVG_DRAWING,
    animated,
    encode,
    exif_with_orientation,
    jpeg_photo,
    linear_rgb_icc_profile,
    png16,
    png_chunk_types,
    png_claiming_size,
    product_photo,
    srgb_icc_profile,
)


def _random_bytes() -> bytes:
    return np.random.default_rng(7).integers(0, 256, size=4096, dtype=np.uint8).tobytes()


def _png_with_bad_crc() -> bytes:
    data = bytearray(encode(product_photo("jar", width=160, height=120).image, "PNG"))
    position = data.index(b"IDAT") + 40  # flip a bit inside the compressed image data
    data[position] ^= 0x01
    return bytes(data)


def _heic_header() -> bytes:
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200


# (id, file builder, code, HTTP status, words the message must contain)
REJECTED: list[tuple[str, Callable[[], bytes], str, int, str]] = [
    ("empty", lambda: b"", "image_empty", 400, "The file is empty"),
    ("random bytes", _random_bytes, "image_unsupported_type", 415, "not a photo we can read"),
    (
        "PNG header followed by HTML",
        lambda: PNG_SIGNATURE + b"<!DOCTYPE html><html><body>Not found</body></html>",
        "image_corrupt",
        422,
        "starts like a PNG image but is damaged",
    ),
    (
        "truncated JPEG",
        lambda: jpeg_photo()[:2500],
        "image_corrupt",
        422,
        "starts like a JPEG image but is damaged or incomplete",
    ),
    ("PNG with a bad checksum", _png_with_bad_crc, "image_corrupt", 422, "PNG image but is damaged"),
    (
        "decompression bomb declaring 30000x30000",
        lambda: png_claiming_size(30_000, 30_000),
        "image_too_many_pixels",
        413,
        "30000 × 30000 pixels (900 megapixels); the limit is 50 megapixels",
    ),
    (
        "64 megapixels that compress to a few kilobytes",
        lambda: encode(Image.new("1", (8000, 8000)), "PNG"),
        "image_too_many_pixels",
        413,
        "8000 × 8000 pixels (64 megapixels)",
    ),
    ("animated GIF", lambda: animated("GIF"), "image_unsupported_type", 415, "This is a GIF image"),
    ("SVG", lambda: SVG_DRAWING, "image_unsupported_type", 415, "This looks like an SVG drawing"),
    ("HEIC", _heic_header, "image_unsupported_type", 415, "HEIC photo"),
    (
        "web page",
        lambda: b"<!doctype html><html><head><title>x</title></head></html>",
        "image_unsupported_type",
        415,
        "web page (HTML)",
    ),
    (
        "60 MB file",
        lambda: b"\xff\xd8\xff\xe0" + bytes(60 * MIB),
        "image_file_too_large",
        413,
        "This file is 60 MB; the limit is 25 MB.",
    ),
    (
        "20000 pixels wide",
        lambda: encode(Image.new("L", (20_000, 100)), "PNG"),
        "image_side_too_long",
        413,
        "20000 pixels wide; the longest side may be at most 12000 pixels",
    ),
    (
        "smaller than the minimum",
        lambda: encode(Image.new("RGB", (48, 300)), "PNG"),
        "image_too_small",
        422,
        "only 48 × 300 pixels",
    ),
    ("APNG", lambda: animated("PNG"), "image_animated", 415, "This is an animated PNG"),
    ("animated WebP", lambda: animated("WEBP"), "image_animated", 415, "This is an animated WebP"),
]


@pytest.mark.parametrize(
    ("make", "code", "status", "words"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED]
)
def test_it_rejects_each_bad_file_with_its_own_code_and_message(
    make: Callable[[], bytes], code: str, status: int, words: str
) -> None:
    with pytest.raises(ImageRejected) as caught:
        image_validate(data=make())
    assert caught.value.code == code
    assert caught.value.status_code == status
    assert words in caught.value.message
    assert caught.value.retryable is False


def test_every_rejection_code_has_one_status() -> None:
    statuses: dict[str, set[int]] = {}
    for _, _, code, status, _ in REJECTED:
        statuses.setdefault(code, set()).add(status)
    assert all(len(found) == 1 for found in statuses.values())


def test_pillows_bomb_warning_is_a_rejection_and_the_warning_filters_stay_as_they_were() -> None:
    # 100 megapixels: above Pillow's warning threshold (~89 MP), below its hard error (~179 MP),
    # and allowed by these generous limits, so only the warning can refuse it.
    generous = IntakeLimits(max_pixels=500_000_000, max_side=50_000)
    filters_before = list(warnings.filters)
    with pytest.raises(ImageRejected) as caught:
        image_validate(data=png_claiming_size(10_000, 10_000), limits=generous)
    assert caught.value.code == "image_too_many_pixels"
    assert warnings.filters == filters_before


class CountingStream(io.RawIOBase):
    """An endless stream that starts like a JPEG and counts what is read from it. It cannot seek."""

    def __init__(self) -> None:
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = len(buffer)
        header = b"\xff\xd8\xff\xe0"
        start = self.bytes_read
        chunk = bytes(size)
        if start < len(header):
            chunk = (header[start:] + chunk)[:size]
        buffer[:size] = chunk
        self.bytes_read += size
        return size


def test_an_endless_stream_is_read_at_most_one_byte_past_the_limit() -> None:
    stream = CountingStream()
    limits = IntakeLimits(max_bytes=3 * MIB)
    with pytest.raises(ImageRejected) as caught:
        image_validate(data=cast(BinaryIO, stream), limits=limits)
    assert caught.value.code == "image_file_too_large"
    assert caught.value.message.startswith("This file is larger than 3 MB, the limit.")
    assert stream.bytes_read == limits.max_bytes + 1


def test_a_60_mb_file_is_measured_without_being_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    with path.open("wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0")
        handle.truncate(60 * MIB + 200 * 1024)  # sparse: costs nothing on disk
    with path.open("rb") as handle, pytest.raises(ImageRejected) as caught:
        image_validate(data=handle)
    assert caught.value.code == "image_file_too_large"
    assert caught.value.message.startswith("This file is 60.2 MB; the limit is 25 MB.")


def test_a_file_object_and_its_bytes_give_the_same_result() -> None:
    data = jpeg_photo()
    from_bytes = image_validate(data=data)
    from_stream = image_validate(data=io.BytesIO(data))
    assert from_stream.sha256 == from_bytes.sha256 == hashlib.sha256(data).hexdigest()
    assert from_stream.image.tobytes() == from_bytes.image.tobytes()
    assert (from_stream.source_format, from_stream.width, from_stream.height) == ("jpeg", 320, 240)


def test_a_file_exactly_at_the_byte_limit_is_accepted() -> None:
    data = encode(product_photo("mug", width=96, height=96).image, "PNG")
    validated = image_validate(data=io.BytesIO(data), limits=IntakeLimits(max_bytes=len(data)))
    assert validated.width == 96


@pytest.mark.parametrize(
    ("fmt", "params", "expected"),
    [("JPEG", {"quality": 90}, "jpeg"), ("PNG", {}, "png"), ("WEBP", {"lossless": True}, "webp")],
)
def test_the_format_comes_from_the_content(fmt: str, params: dict[str, object], expected: str) -> None:
    validated = image_validate(data=encode(product_photo("jar", width=128, height=96).image, fmt, **params))
    assert validated.source_format == expected
    assert validated.image.mode == "RGB"


def _solid_patches() -> tuple[Image.Image, list[tuple[tuple[int, int], tuple[int, int, int]]]]:
    colours = [(220, 40, 40), (40, 160, 60), (30, 60, 200), (240, 200, 40), (120, 120, 120), (20, 20, 20)]
    image = Image.new("RGB", (6 * 64, 64))
    centres = []
    for index, colour in enumerate(colours):
        image.paste(colour, (index * 64, 0, index * 64 + 64, 64))
        centres.append(((index * 64 + 32, 32), colour))
    return image, centres


def test_a_cmyk_jpeg_comes_out_rgb_with_the_right_colours() -> None:
    image, centres = _solid_patches()
    data = encode(image.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    validated = image_validate(data=data)
    assert validated.image.mode == "RGB"
    for (x, y), colour in centres:
        got = validated.image.getpixel((x, y))
        assert isinstance(got, tuple)
        assert max(abs(a - b) for a, b in zip(got, colour, strict=True)) <= 6, (colour, got)


def test_an_exif_rotated_jpeg_is_turned_upright() -> None:
    # Stored 200x100 with a red block in its top-left corner; orientation 6 means "rotate 90° clockwise
    # to display", so upright it is 100x200 and the block sits in the top-right corner.
    stored = Image.new("RGB", (200, 100), (128, 128, 128))
    stored.paste((230, 20, 20), (0, 0, 40, 30))
    validated = image_validate(data=encode(stored, "JPEG", quality=95, exif=exif_with_orientation(6)))
    assert (validated.width, validated.height) == (100, 200)
    assert validated.image.size == (100, 200)
    red = validated.image.getpixel((100 - 15, 20))
    grey = validated.image.getpixel((15, 20))
    assert isinstance(red, tuple) and isinstance(grey, tuple)
    assert red[0] > 200 and red[1] < 60, red
    assert abs(grey[0] - 128) < 8, grey


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_every_exif_orientation_gives_the_same_upright_picture(orientation: int) -> None:
    upright = Image.new("RGB", (120, 80), (128, 128, 128))
    upright.paste((230, 20, 20), (0, 0, 30, 20))
    upright.paste((20, 20, 230), (90, 60, 120, 80))
    # Store the upright picture the way a camera with this orientation would have.
    inverse = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    stored = upright.transpose(inverse[orientation]) if orientation in inverse else upright
    validated = image_validate(data=encode(stored, "PNG", exif=exif_with_orientation(orientation)))
    assert validated.image.tobytes() == upright.tobytes()


def test_a_16_bit_greyscale_png_is_scaled_not_clipped() -> None:
    row = np.array([0, 255, 257, 32896, 65535] * 20, dtype=np.uint16)
    data = png16(np.tile(row, (70, 1)))
    validated = image_validate(data=data)
    assert validated.image.mode == "RGB"
    values = np.asarray(validated.image)[0, :5, 0]
    assert values.tolist() == [0, 1, 1, 128, 255]


def test_a_16_bit_rgba_png_is_scaled_channel_by_channel() -> None:
    pixel = np.array([65535, 32896, 257, 32896], dtype=np.uint16)
    data = png16(np.tile(pixel, (64, 64, 1)))
    validated = image_validate(data=data)
    assert validated.image.mode == "RGBA"
    assert validated.image.getpixel((10, 10)) == (255, 128, 1, 128)


def test_a_16_bit_rgb_png_with_a_transparent_colour_key_gets_real_alpha() -> None:
    from tests.images import png_chunk

    pixels = np.zeros((64, 64, 3), dtype=np.uint16)
    pixels[:, :32] = (65535, 0, 0)
    pixels[:, 32:] = (1000, 2000, 3000)
    key = png_chunk(b"tRNS", np.array([1000, 2000, 3000], dtype=">u2").tobytes())
    validated = image_validate(data=png16(pixels, extra_chunks=key))
    assert validated.image.mode == "RGBA"
    assert validated.image.getpixel((5, 5)) == (255, 0, 0, 255)
    assert validated.image.getpixel((50, 5))[3] == 0  # type: ignore[index]


def test_a_palette_png_with_transparency_becomes_rgba_with_the_right_alpha() -> None:
    image = Image.new("P", (96, 64))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.paste(1, (32, 0, 64, 64))
    image.paste(2, (64, 0, 96, 64))
    data = encode(image, "PNG", transparency=bytes([0, 128, 255]))
    validated = image_validate(data=data)
    assert validated.image.mode == "RGBA"
    assert validated.image.getpixel((10, 10))[3] == 0  # type: ignore[index]
    assert validated.image.getpixel((40, 10)) == (0, 255, 0, 128)
    assert validated.image.getpixel((80, 10)) == (0, 0, 255, 255)


def test_a_palette_png_without_transparency_becomes_rgb() -> None:
    image = Image.new("RGB", (96, 64), (10, 120, 200)).quantize(4)
    validated = image_validate(data=encode(image, "PNG"))
    assert validated.image.mode == "RGB"
    assert validated.image.getpixel((5, 5)) == (10, 120, 200)


def test_a_greyscale_png_becomes_rgb_with_equal_channels() -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    validated = image_validate(data=encode(Image.fromarray(ramp, mode="L"), "PNG"))
    assert validated.image.mode == "RGB"
    pixels = np.asarray(validated.image)
    assert (
        (pixels[..., 0] == ramp).all() and (pixels[..., 1] == ramp).all() and (pixels[..., 2] == ramp).all()
    )


def test_a_greyscale_png_with_alpha_becomes_rgba() -> None:
    image = Image.new("LA", (64, 64), (90, 255))
    image.paste((200, 0), (0, 0, 32, 64))
    validated = image_validate(data=encode(image, "PNG"))
    assert validated.image.mode == "RGBA"
    assert validated.image.getpixel((40, 5)) == (90, 90, 90, 255)
    assert validated.image.getpixel((5, 5))[3] == 0  # type: ignore[index]


def test_an_alpha_channel_that_hides_nothing_is_dropped() -> None:
    image = Image.new("RGBA", (64, 64), (10, 20, 30, 255))
    validated = image_validate(data=encode(image, "PNG"))
    assert validated.image.mode == "RGB"


def test_a_webp_with_transparency_keeps_it() -> None:
    image = Image.new("RGBA", (64, 64), (10, 20, 30, 255))
    image.paste((0, 0, 0, 0), (0, 0, 16, 16))
    validated = image_validate(data=encode(image, "WEBP", lossless=True))
    assert validated.image.mode == "RGBA"
    assert validated.image.getpixel((4, 4))[3] == 0  # type: ignore[index]
    assert validated.image.getpixel((40, 40)) == (10, 20, 30, 255)


def test_an_mpo_photo_from_a_phone_is_accepted_as_its_first_picture() -> None:
    first = product_photo("bottle", width=160, height=120).image
    second = Image.new("RGB", (160, 120), (0, 0, 0))
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=95)
    validated = image_validate(data=data)
    assert validated.source_format == "jpeg"
    assert validated.image.getpixel((80, 60)) != (0, 0, 0)


def test_a_photo_with_an_icc_profile_is_converted_to_srgb() -> None:
    # Linear-light grey 128 is sRGB grey ~188: the conversion visibly happened.
    image = Image.new("RGB", (64, 64), (128, 128, 128))
    validated = image_validate(data=encode(image, "PNG", icc_profile=linear_rgb_icc_profile()))
    red, green, blue = validated.image.getpixel((5, 5))  # type: ignore[misc]
    assert 185 <= red <= 190 and red == green == blue
    assert "icc_profile" not in validated.image.info


def test_an_unreadable_icc_profile_is_ignored_rather_than_rejecting_the_photo() -> None:
    image = Image.new("RGB", (64, 64), (128, 60, 20))
    validated = image_validate(data=encode(image, "PNG", icc_profile=b"not a profile at all" * 10))
    assert validated.image.getpixel((5, 5)) == (128, 60, 20)


def _metadata_rich_files() -> list[tuple[str, bytes]]:
    photo = product_photo("jar", width=160, height=120).image
    exif = exif_with_orientation(1, tag_010f="Camera maker", tag_0110="Camera model")
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "secret location")
    text.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPS here</x:xmpmeta>")
    return [
        ("jpeg", encode(photo, "JPEG", exif=exif, icc_profile=srgb_icc_profile(), quality=90)),
        (
            "png",
            encode(
                photo, "PNG", exif=exif, icc_profile=linear_rgb_icc_profile(), pnginfo=text, dpi=(300, 300)
            ),
        ),
        ("webp", encode(photo, "WEBP", exif=exif, icc_profile=srgb_icc_profile(), xmp=b"<x:xmpmeta/>")),
    ]


@pytest.mark.parametrize(
    ("fmt", "data"), _metadata_rich_files(), ids=lambda value: value if isinstance(value, str) else ""
)
def test_no_metadata_survives_into_the_stored_png(fmt: str, data: bytes) -> None:
    source = Image.open(io.BytesIO(data))
    assert source.getexif() and source.info.get("icc_profile")  # the file really carries metadata
    validated = image_validate(data=data)
    assert validated.source_format == fmt
    assert validated.image.info == {}
    stored = validated.encode_png()
    assert set(png_chunk_types(stored)) == {"IHDR", "IDAT", "IEND"}
    reopened = Image.open(io.BytesIO(stored))
    assert not reopened.getexif()
    assert reopened.info == {}
    assert reopened.tobytes() == validated.image.tobytes()


def test_the_stored_png_holds_exactly_the_normalised_pixels() -> None:
    image = Image.new("RGBA", (80, 64), (200, 100, 50, 255))
    image.paste((1, 2, 3, 77), (0, 0, 20, 20))
    validated = image_validate(data=encode(image, "PNG"))
    reopened = Image.open(io.BytesIO(validated.encode_png()))
    assert reopened.mode == "RGBA"
    assert reopened.tobytes() == image.tobytes()


def test_limits_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(ValueError, match="min_side"):
        IntakeLimits(min_side=500, max_side=400)
    with pytest.raises(ValueError, match="max_bytes"):
        IntakeLimits(max_bytes=0)


def test_a_text_stream_is_a_programming_error_not_a_rejection() -> None:
    with pytest.raises(TypeError, match="binary stream"):
        image_validate(data=io.StringIO("hello"))  # type: ignore[arg-type]


def test_intake_does_not_need_django() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mockups.jobs.intake as m; "
        "assert not any(name == 'django' or name.startswith('django.') for name in sys.modules), 'django imported'"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=env,
    )
    assert result.returncode == 0, result.stderr
