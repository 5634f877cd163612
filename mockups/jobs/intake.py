"""Image intake: the one check every uploaded photo passes before anything stores or decodes it further.

Every door (browser form, REST multipart, data URI, uploaded file URL) hands its bytes or
stream to :func:`image_validate`. It accepts JPEG, PNG and WebP photos, recognised from their
content (never from a file name or a declared content type), and returns them normalised:
8-bit RGB (or RGBA where the photo really has transparency), upright, in sRGB, with every
piece of metadata dropped. Anything else is refused with an :class:`ImageRejected` that says,
in words a merchant understands, what is wrong and what to upload instead.

Safety, in the order the checks run:

1. at most ``max_bytes + 1`` bytes are ever read from a stream;
2. the type is sniffed from the magic bytes and confirmed by Pillow's own identification,
   restricted to the three accepted formats;
3. width, height and pixel count are checked from the header, before any pixel is decoded
   (Pillow's decompression-bomb warning is turned into a rejection too, see below);
4. animated PNG/WebP files are refused; the whole image is then decoded with truncated-image
   loading off, so truncated or corrupt files are refused rather than padded with grey.

This module needs only Pillow, NumPy and OpenCV (and ``mockups.errors``): no Django settings;
limits come in as arguments.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Final

import cv2
import numpy as np
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from mockups.errors import DomainError

logger = logging.getLogger(__name__)

MIB: Final = 1024 * 1024
_READ_CHUNK: Final = 1 * MIB
_ORIENTATION_TAG: Final = 0x0112
# Pillow's format ids per accepted type. Many phone cameras write MPO: a JPEG whose first
# picture is the photo, followed by depth or preview pictures that are simply ignored.
_PILLOW_FORMATS: Final = {"jpeg": ("JPEG", "MPO"), "png": ("PNG",), "webp": ("WEBP",)}
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PLEASE_UPLOAD: Final = "upload a JPEG, PNG or WebP photo"
_DISPLAY_NAMES: Final = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP"}


class ImageRejected(DomainError):
    """An upload that is not an acceptable photo. ``code`` names the reason; the message says what to do.

    Codes (stable, for API clients): ``image_empty`` (400), ``image_file_too_large`` (413),
    ``image_too_many_pixels`` (413), ``image_side_too_long`` (413), ``image_too_small`` (422),
    ``image_unsupported_type`` (415), ``image_animated`` (415), ``image_corrupt`` (422).
    """

    code = "image_rejected"
    status_code = 422


def _rejected(code: str, status_code: int, message: str) -> ImageRejected:
    return ImageRejected(message, code=code, status_code=status_code)


@dataclass(frozen=True)
class IntakeLimits:
    """What an upload may weigh and measure. Bytes are bytes; ``max_pixels`` is width x height."""

    max_bytes: int = 25 * MIB
    max_pixels: int = 50_000_000
    max_side: int = 12_000
    min_side: int = 64

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_side", "min_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"IntakeLimits.{name} must be at least 1, got {getattr(self, name)}")
        if self.min_side > self.max_side:
            raise ValueError(f"IntakeLimits.min_side ({self.min_side}) is above max_side ({self.max_side})")


@dataclass(frozen=True)
class ValidatedImage:
    """A photo that passed intake.

    ``image`` is normalised: mode "RGB", or "RGBA" only when some pixel is not fully opaque;
    8 bits per channel; EXIF orientation applied; converted to sRGB when it carried an ICC
    profile; no metadata at all (``image.info`` is empty). ``source_format`` is what the
    content was ("jpeg", "png" or "webp"); ``sha256`` is the hex digest of the bytes received.
    """

    image: Image.Image
    source_format: str
    width: int
    height: int
    sha256: str

    def encode_png(self) -> bytes:
        """The normalised image as a PNG without any metadata chunk, fast compression (level 1).

        This is what gets stored: lossless, so the pixels a later stage reads are exactly these.
        """
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


def image_validate(*, data: bytes | BinaryIO, limits: IntakeLimits = IntakeLimits()) -> ValidatedImage:
    """Check an uploaded photo and return it normalised; raise :class:`ImageRejected` otherwise.

    ``data`` is the whole file as bytes, or a binary stream read from its current position:
    never more than ``limits.max_bytes + 1`` bytes are read from it, whatever it holds.
    Pure function of its inputs; safe to call from several threads at once.
    """
    raw = _read_bounded(data, limits.max_bytes)
    if not raw:
        raise _rejected("image_empty", 400, f"The file is empty; {_PLEASE_UPLOAD}.")
    source_format = _sniff(raw)
    source = _open_checked(raw, source_format, limits)
    try:
        image = _normalise(source, raw, source_format)
    finally:
        source.close()
    return ValidatedImage(
        image=image,
        source_format=source_format,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


# --- reading ---------------------------------------------------------------------------------


def _megabytes(size: int) -> str:
    text = f"{size / MIB:.1f}"
    return text.removesuffix(".0") + " MB"


def _read_bounded(data: bytes | BinaryIO, max_bytes: int) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > max_bytes:
            raise _too_many_bytes(len(raw), max_bytes)
        return raw
    if not hasattr(data, "read"):
        raise TypeError(f"image_validate takes bytes or a binary stream, not {type(data).__name__}")
    chunks: list[bytes] = []
    remaining = max_bytes + 1
    while remaining > 0:
        chunk = data.read(min(remaining, _READ_CHUNK))
        if not chunk:
            break
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError("image_validate needs a binary stream (opened in 'rb' mode), not a text stream")
        chunks.append(bytes(chunk))
        remaining -= len(chunk)
    raw = b"".join(chunks)
    if len(raw) > max_bytes:
        raise _too_many_bytes(_stream_size(data, consumed=len(raw)), max_bytes)
    return raw


def _stream_size(stream: BinaryIO, *, consumed: int) -> int | None:
    """The stream's full size without reading it, when it can seek; None when it cannot tell."""
    try:
        if not stream.seekable():
            return None
        position = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(position)
    except (OSError, ValueError, AttributeError):
        return None
    return consumed + (end - position)


def _too_many_bytes(size: int | None, max_bytes: int) -> ImageRejected:
    if size is None:
        message = f"This file is larger than {_megabytes(max_bytes)}, the limit."
    else:
        message = f"This file is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}."
    return _rejected("image_file_too_large", 413, message + " Export the photo smaller or as JPEG.")


# --- what is it? -----------------------------------------------------------------------------

# Formats we refuse, recognised so the message can say what the file is and what to do.
_OTHER_TYPES: Final[tuple[tuple[int, bytes, str], ...]] = (
    (0, b"GIF87a", "This is a GIF image; {please} (GIFs, animated or not, are not supported)."),
    (0, b"GIF89a", "This is a GIF image; {please} (GIFs, animated or not, are not supported)."),
    (0, b"%PDF", "This is a PDF document; {please}."),
    (0, b"II*\x00", "This is a TIFF image; {please}."),
    (0, b"MM\x00*", "This is a TIFF image; {please}."),
    (0, b"BM", "This is a BMP image; {please}."),
    (0, b"8BPS", "This is a Photoshop document; export it as JPEG or PNG and upload that."),
    (0, b"\xff\x0a", "This is a JPEG XL image; {please}."),
    (0, b"\x00\x00\x00\x0cJXL ", "This is a JPEG XL image; {please}."),
    (0, b"PK\x03\x04", "This is a ZIP archive; {please}, one photo per upload."),
    (0, b"\x00\x00\x01\x00", "This is an icon file; {please}."),
)
_ISO_MEDIA_BRANDS: Final = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}


def _sniff(raw: bytes) -> str:
    """Return "jpeg", "png" or "webp" from the magic bytes, or raise a rejection that names what it is."""
    if raw.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if raw.startswith(_PNG_SIGNATURE):
        return "png"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "webp"
    for offset, magic, message in _OTHER_TYPES:
        if raw[offset : offset + len(magic)] == magic:
            raise _rejected("image_unsupported_type", 415, message.format(please=_PLEASE_UPLOAD))
    if raw[4:8] == b"ftyp" and raw[8:12] in _ISO_MEDIA_BRANDS:
        kind = _ISO_MEDIA_BRANDS[raw[8:12]]
        raise _rejected(
            "image_unsupported_type",
            415,
            f"This is a {kind} photo (the iPhone camera format); export it as JPEG "
            f"(on iPhone: Settings > Camera > Formats > Most Compatible) or {_PLEASE_UPLOAD}.",
        )
    head = raw[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head and (head.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--"))):
        raise _rejected("image_unsupported_type", 415, f"This looks like an SVG drawing; {_PLEASE_UPLOAD}.")
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        raise _rejected(
            "image_unsupported_type",
            415,
            f"This is a web page (HTML), not a photo; save the image itself and {_PLEASE_UPLOAD}.",
        )
    raise _rejected("image_unsupported_type", 415, f"This file is not a photo we can read; {_PLEASE_UPLOAD}.")


def _corrupt(source_format: str) -> ImageRejected:
    return _rejected(
        "image_corrupt",
        422,
        f"This file starts like a {_DISPLAY_NAMES[source_format]} image but is damaged or incomplete "
        "(perhaps the upload or download was cut short); open it on your computer, save it again and retry.",
    )


def _too_many_pixels(width: int | None, height: int | None, max_pixels: int) -> ImageRejected:
    limit = f"{max_pixels / 1_000_000:.0f} megapixels"
    if width is None or height is None:
        message = f"This image has far more pixels than the limit of {limit}."
    else:
        megapixels = width * height / 1_000_000
        size = f"{width} × {height} pixels ({megapixels:,.0f} megapixels)"
        message = f"This image is {size}; the limit is {limit}."
    return _rejected("image_too_many_pixels", 413, message + " Resize it and upload it again.")


# Errors Pillow's parsers and decoders raise on damaged files.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


def _open_checked(raw: bytes, source_format: str, limits: IntakeLimits) -> Image.Image:
    """Open, check the header's dimensions and animation, then fully decode. The caller closes it."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide switch we must not flip back ourselves (other threads may rely on it),
        # but with it on Pillow pads truncated files with grey and we would accept them.
        raise RuntimeError("image intake needs PIL.ImageFile.LOAD_TRUNCATED_IMAGES to be off in this process")
    formats = list(_PILLOW_FORMATS[source_format])
    # Pillow warns (DecompressionBombWarning) for images above Image.MAX_IMAGE_PIXELS and raises above
    # twice that; the warning becomes a rejection too. catch_warnings is process-global while it is
    # active, so the dimension checks below do not rely on it: they reject bombs on their own.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(raw), formats=formats)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            width, height = _declared_png_size(raw) if source_format == "png" else (None, None)
            raise _too_many_pixels(width, height, limits.max_pixels) from exc
        except UnidentifiedImageError as exc:
            raise _corrupt(source_format) from exc
        except _DECODE_ERRORS as exc:
            raise _corrupt(source_format) from exc
        try:
            _check_dimensions(image.width, image.height, limits)
            if source_format in ("png", "webp") and getattr(image, "is_animated", False):
                raise _rejected(
                    "image_animated",
                    415,
                    f"This is an animated {_DISPLAY_NAMES[source_format]}; upload a still photo "
                    "(JPEG, PNG or WebP with a single frame).",
                )
            if source_format == "png":
                _verify_png(raw)
            image.load()
        except ImageRejected:
            image.close()
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            image.close()
            raise _too_many_pixels(image.width, image.height, limits.max_pixels) from exc
        except _DECODE_ERRORS as exc:
            image.close()
            raise _corrupt(source_format) from exc
    return image


def _declared_png_size(raw: bytes) -> tuple[int | None, int | None]:
    """Width and height from a PNG's IHDR chunk (for the message when Pillow refused to open it)."""
    if len(raw) < 24 or raw[12:16] != b"IHDR":
        return None, None
    width, height = struct.unpack(">II", raw[16:24])
    return int(width), int(height)


def _check_dimensions(width: int, height: int, limits: IntakeLimits) -> None:
    if width * height > limits.max_pixels:
        raise _too_many_pixels(width, height, limits.max_pixels)
    longest = max(width, height)
    if longest > limits.max_side:
        side = "wide" if width >= height else "tall"
        raise _rejected(
            "image_side_too_long",
            413,
            f"This image is {longest} pixels {side}; the longest side may be at most {limits.max_side} "
            "pixels. Resize it and upload it again.",
        )
    if min(width, height) < limits.min_side:
        raise _rejected(
            "image_too_small",
            422,
            f"This image is only {width} × {height} pixels; a product photo needs at least "
            f"{limits.min_side} pixels on each side.",
        )


def _verify_png(raw: bytes) -> None:
    """Check every chunk's CRC (Pillow's decoder alone does not), raising a decode error if one is wrong."""
    with Image.open(io.BytesIO(raw), formats=["PNG"]) as probe:
        probe.verify()


# --- normalisation ---------------------------------------------------------------------------

_SRGB: ImageCms.ImageCmsProfile | None = None


def _srgb() -> ImageCms.ImageCmsProfile:
    global _SRGB
    if _SRGB is None:
        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return _SRGB


def _icc_profile(image: Image.Image) -> ImageCms.ImageCmsProfile | None:
    """The embedded ICC profile, or None when there is none, it is unreadable, or it already is sRGB."""
    data = image.info.get("icc_profile")
    if not data:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        logger.info("intake: ignoring an unreadable ICC profile")
        return None
    description = (profile.profile.profile_description or "").strip().lower()
    if description.startswith("srgb"):
        return None  # converting sRGB to sRGB would only add rounding
    return profile


def _colour_space(profile: ImageCms.ImageCmsProfile) -> str:
    return str(profile.profile.xcolor_space).strip().upper()


def _to_srgb(
    image: Image.Image, profile: ImageCms.ImageCmsProfile | None, output_mode: str
) -> Image.Image | None:
    """``image`` converted from ``profile`` to sRGB, or None when there is nothing usable to convert with."""
    if profile is None:
        return None
    try:
        converted = ImageCms.profileToProfile(image, profile, _srgb(), outputMode=output_mode)
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        logger.info("intake: ignoring an ICC profile that does not fit the image (%s)", exc)
        return None
    return converted if isinstance(converted, Image.Image) else None


def _png_bit_depth(raw: bytes) -> int:
    # IHDR is always the first chunk: signature (8) + length (4) + type (4) + width (4) + height (4).
    return raw[24] if len(raw) > 24 and raw[12:16] == b"IHDR" else 8


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 with rounding (65535 -> 255, 32896 -> 128): no clipping, no truncation."""
    wide = values.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _decode_png16(raw: bytes) -> Image.Image:
    """A 16-bit PNG as 8-bit L, RGB or RGBA, scaled properly.

    Pillow keeps only the high byte of 16-bit colour PNGs and clips 16-bit greyscale to 255
    when converting, and it cannot apply a 16-bit tRNS colour key; OpenCV's libpng reader gives
    the full 16-bit samples with tRNS expanded to alpha. Runs only after Pillow has decoded the
    same file without error and its dimensions passed the limits.
    """
    array = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16:
        raise _corrupt("png")
    eight = _sixteen_to_eight(array)
    if eight.ndim == 2:
        return Image.fromarray(eight, mode="L")
    if eight.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(eight[:, :, ::-1]), mode="RGB")
    return Image.fromarray(np.ascontiguousarray(eight[:, :, [2, 1, 0, 3]]), mode="RGBA")


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError, struct.error, KeyError, TypeError):
        return 1  # an unreadable EXIF block is dropped with the rest of the metadata
    return value if isinstance(value, int) else 1


# The same table as ImageOps.exif_transpose. It is applied here by hand because 16-bit PNGs are
# decoded outside Pillow, and those pixels need turning upright too.
_TRANSPOSE_FOR_ORIENTATION: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _normalise(source: Image.Image, raw: bytes, source_format: str) -> Image.Image:
    """8-bit RGB/RGBA in sRGB, upright, no metadata, from a fully decoded source image."""
    profile = _icc_profile(source)
    orientation = _orientation(source)
    sixteen_bit_png = source_format == "png" and _png_bit_depth(raw) == 16
    pixels = _decode_png16(raw) if sixteen_bit_png else source
    image = _to_rgb_or_rgba(pixels, profile)
    if image.mode == "RGBA" and image.getchannel("A").getextrema()[0] == 255:
        image = image.convert("RGB")  # an alpha channel that hides nothing is not transparency
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
    if image is source:
        image = image.copy()
    image.info = {}  # EXIF, ICC, XMP, text chunks, DPI: none of it goes further
    return image


def _to_rgb_or_rgba(image: Image.Image, profile: ImageCms.ImageCmsProfile | None) -> Image.Image:
    space = _colour_space(profile) if profile is not None else ""
    mode = image.mode
    if mode == "CMYK":
        return (_to_srgb(image, profile, "RGB") if space == "CMYK" else None) or image.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        # 16-bit greyscale from Pillow (a PNG is decoded by _decode_png16 before reaching here).
        image = Image.fromarray(_sixteen_to_eight(np.clip(np.asarray(image), 0, 65535)), mode="L")
        mode = "L"
    if mode in ("1", "F"):
        image, mode = image.convert("L"), "L"
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    elif mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("LA" if mode == "L" else "RGBA")  # a colour key becomes real alpha
        mode = image.mode
    if mode in ("L", "LA", "La"):
        grey = image.getchannel("L") if mode != "L" else image
        rgb = (_to_srgb(grey, profile, "RGB") if space == "GRAY" else None) or grey.convert("RGB")
        if mode == "L":
            return rgb
        rgba = rgb.convert("RGBA")
        rgba.putalpha(image.convert("LA").getchannel("A"))
        return rgba
    if mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() or mode == "RGBa" else "RGB")
        mode = image.mode
    if space == "RGB":
        return _to_srgb(image, profile, mode) or image
    return image
