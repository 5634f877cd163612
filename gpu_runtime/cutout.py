"""Background removal: product photo in, the same pixels with an alpha mask out.

Three ways to get the mask, in order of preference:

* ``"alpha"``: the photo already has real transparency (a PNG/WebP cutout); that alpha is the mask.
* ``"rembg:<model>"``: rembg's own session code runs ``<model_dir>/<model>.onnx``. The file must be
  there: this module never lets rembg download anything (see :func:`_local_session_class`).
* ``"grabcut"``: a classical fallback with OpenCV's GrabCut, seeded from the photo's border,
  good for a product on a plain studio backdrop; used when the model file is missing and the
  operator allowed a fallback.

Every mask ends the same way (:func:`_finish_mask`): binarised at half-way, specks and stray
blobs dropped, pinholes filled, scaled back to the full photo, and feathered by one or two
pixels *inside* the edge only. So the product's interior is exactly 255 - the pixels that
compositing later guarantees to keep bit-exact - and everything outside the product is 0.

Heavy work runs on a downscaled copy (longest side :data:`WORK_SIDE`; u2net itself sees 320x320
as in rembg) and only the final mask is scaled up, so a 12 MP photo costs about what a 1 MP one does.

Confidence (0..1) says how sure we are that the mask cleanly separates one product from its
background. It is the product of four scores, each 0..1, computed on the working copy:

* ``area``: the product covers a sane share of the photo (full score from 3 % to 85 %,
  falling to 0 at 0.5 % and at 97 %);
* ``border``: the mask does not run along the photo's edges (up to 15 % of the outer ring may
  be product - a product cropped at the bottom - falling to 0 at 50 %);
* ``edges``: the mask's outline lies on edges of the photo itself: the share of outline pixels
  within 2 px of a Canny edge, above the share expected by chance (the photo's overall edge
  density, so a busy photo earns nothing for edges it has everywhere); square-rooted;
* ``decisive``: the evidence is two-sided, not mushy: for rembg the share of pixels the model
  scored below 0.1 or above 0.9; for GrabCut the share of pixels whose colour distance to the
  fitted backdrop is clearly small, clearly large or a shadow, times how plain the backdrop is
  (its 90th-percentile fit error: full score up to 8 Lab units, 0 from 24); for an existing
  alpha, the share of alpha values at 0 or 255. Square-rooted.

No Django here: plain images in, a plain result out.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from rembg.sessions.base import BaseSession

logger = logging.getLogger(__name__)

WORK_SIDE: Final = 1024  # longest side of the copy the mask is computed on
_GRABCUT_ITERATIONS: Final = 4
_MIN_COMPONENT_SHARE: Final = 0.2  # keep blobs at least this large relative to the largest one
_MAX_PINHOLE_SHARE: Final = 0.005  # holes below this share of the product are filled
_EDGE_TOLERANCE_PX: Final = 2


class CutoutError(Exception):
    """Background removal cannot run as configured."""


class CutoutModelMissing(CutoutError):
    """The configured rembg model file is not where it should be (and no fallback is allowed)."""

    def __init__(self, *, model_dir: Path | None, model_name: str) -> None:
        self.model_dir = model_dir
        self.model_name = model_name
        self.path = model_dir / f"{model_name}.onnx" if model_dir is not None else None
        if self.path is None:
            where = f"no model folder is configured, so {model_name}.onnx cannot be found"
        else:
            where = f"expected the file {self.path} (folder {model_dir}, file {model_name}.onnx)"
        super().__init__(
            f"The background-removal model '{model_name}' is not installed: {where}. "
            "Copy the .onnx file there (it is never downloaded at run time), point REMBG_MODEL_DIR / "
            "REMBG_MODEL at it, or allow the GrabCut fallback (REMBG_ALLOW_FALLBACK=1)."
        )


class CutoutModelUnusable(CutoutError):
    """The model file is there but onnxruntime could not load it (truncated download, wrong file...)."""


@dataclass
class CutoutResult:
    """``rgba``: the input's own RGB pixels with alpha = ``mask`` (same size as the input).

    ``mask``: mode "L", 0 = background, 255 = product (interior exactly 255, edges feathered
    1-2 px inward). ``confidence``: 0..1, see the module docstring. ``method``: "alpha",
    "rembg:<model>" or "grabcut". ``seconds``: wall time of :meth:`BackgroundRemover.remove_background`.
    """

    rgba: Image.Image
    mask: Image.Image
    confidence: float
    method: str
    seconds: float


class BackgroundRemover:
    """Removes backgrounds with one rembg session per instance, or with GrabCut when allowed.

    rembg is used when ``<model_dir>/<model_name>.onnx`` exists. Without it: with
    ``allow_fallback`` the remover uses GrabCut (and says so in :meth:`health`); without, the
    constructor raises :class:`CutoutModelMissing` - a clear error at start, not at the first job.
    A file that onnxruntime cannot load is found at the first load: with ``allow_fallback`` the
    remover switches to GrabCut (``health()["last_error"]`` says why), without it every call raises
    :class:`CutoutModelUnusable`. A remover on GrabCut looks for the model file again before each
    photo (one ``stat``): a file put in place, or a broken one replaced, is loaded and used from
    that photo on, without restarting the worker.
    ``model_name`` picks rembg's session class of that name (u2net, u2netp, u2net_human_seg,
    silueta, isnet-general-use, birefnet-*...) for its pre- and post-processing; an unknown name
    is run as a u2net-style model (rembg's ``u2net_custom``).
    The rembg session is created once, on first use or by :meth:`load`, under a lock, and reused
    by every call and thread (onnxruntime sessions are safe to run concurrently).
    """

    def __init__(
        self, *, model_dir: Path | None, model_name: str = "u2net", allow_fallback: bool = True
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.model_name = model_name
        self.allow_fallback = allow_fallback
        self.model_path = self.model_dir / f"{model_name}.onnx" if self.model_dir is not None else None
        self._lock = threading.Lock()
        self._session: BaseSession | None = None
        self._last_error: str | None = None
        self._rejected: tuple[int, int] | None = None  # (size, mtime) of a file that would not load
        self._use_model = self.model_path is not None and self.model_path.is_file()
        if not self._use_model:
            missing = CutoutModelMissing(model_dir=self.model_dir, model_name=model_name)
            if not allow_fallback:
                raise missing
            self._last_error = str(missing)
            logger.warning("cutout: %s Using the GrabCut fallback.", missing)

    @property
    def method(self) -> str:
        """What masks photos without transparency: "rembg:<model>" or "grabcut"."""
        return f"rembg:{self.model_name}" if self._use_model else "grabcut"

    def health(self) -> dict[str, object]:
        """What a health endpoint shows: method in use, model file and whether it is there and loaded."""
        session = self._session
        return {
            "method": self.method,
            "model_name": self.model_name,
            "model_path": str(self.model_path) if self.model_path is not None else None,
            "model_exists": bool(self.model_path is not None and self.model_path.is_file()),
            "loaded": session is not None,
            "providers": list(session.inner_session.get_providers()) if session is not None else [],
            "fallback_allowed": self.allow_fallback,
            "last_error": self._last_error,
        }

    def load(self) -> None:
        """Create the rembg session now (a worker's warm-up), if rembg is the method. Idempotent."""
        if self._use_model:
            self.session()

    def session(self) -> BaseSession:
        """The rembg session, created on the first call and the same object on every later one.

        Raises CutoutModelMissing if the file vanished before the first load, CutoutModelUnusable
        if onnxruntime cannot load it, and CutoutError when this remover is on the GrabCut fallback.
        """
        session = self._session
        if session is not None:
            return session
        if not self._use_model or self.model_path is None:
            raise CutoutError(f"This background remover uses {self.method}; it has no rembg session.")
        with self._lock:
            if self._session is None:
                self._session = self._create_session(self.model_path)
            return self._session

    def _create_session(self, path: Path) -> BaseSession:
        import onnxruntime as ort
        from rembg.sessions import sessions as rembg_sessions
        from rembg.sessions.u2net_custom import U2netCustomSession

        # rembg's session for this model name (its pre/post-processing), or the generic u2net one.
        base = rembg_sessions.get(self.model_name, U2netCustomSession)
        session_class = _local_session_class(base, path, model_dir=self.model_dir, model_name=self.model_name)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads := os.environ.get("OMP_NUM_THREADS", "").strip():  # as rembg.new_session does
            options.intra_op_num_threads = options.inter_op_num_threads = int(threads)
        started = time.perf_counter()
        try:
            session = session_class(self.model_name, options, model_path=str(path))
        except CutoutModelMissing:
            self._last_error = f"{path} disappeared before it could be loaded"
            raise
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            self._last_error = f"could not load {path}: {exc}"
            raise CutoutModelUnusable(
                f"The background-removal model {path} could not be loaded ({exc}). "
                "The file may be truncated or not a rembg model; replace it."
            ) from exc
        self._last_error = None
        logger.info("cutout: loaded %s from %s in %.2f s", self.method, path, time.perf_counter() - started)
        return session

    def remove_background(self, image: Image.Image) -> CutoutResult:
        """Cut the product out of ``image`` (any mode; RGB or RGBA expected). Pure apart from the session.

        An image with real transparency (some alpha below 255) keeps its alpha as the mask.
        """
        started = time.perf_counter()
        rgb, alpha = _split(image)
        if alpha is not None:
            mask_array = np.asarray(alpha)
            confidence = _confidence_of_alpha(rgb, mask_array)
            method = "alpha"
        elif (self._use_model or self._model_arrived()) and self._session_or_fallback() is not None:
            mask_array, confidence = self._rembg_mask(rgb)
            method = self.method
        else:
            mask_array, confidence = _grabcut_mask(rgb)
            method = "grabcut"
        mask = Image.fromarray(mask_array, mode="L")
        rgba = rgb.copy()
        rgba.putalpha(mask)
        return CutoutResult(
            rgba=rgba,
            mask=mask,
            confidence=float(confidence),
            method=method,
            seconds=time.perf_counter() - started,
        )

    def _session_or_fallback(self) -> BaseSession | None:
        """The session; or, when it cannot load and a fallback is allowed, None (and GrabCut until
        the file changes)."""
        try:
            return self.session()
        except CutoutError:
            if not self.allow_fallback:
                raise
            logger.error("cutout: %s Falling back to GrabCut until the file is replaced.", self._last_error)
            self._rejected = self._model_file_stamp()
            self._use_model = False
            return None

    def _model_file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.model_path.stat() if self.model_path is not None else None
        except OSError:
            return None
        return (stat.st_size, stat.st_mtime_ns) if stat is not None else None

    def _model_arrived(self) -> bool:
        """On GrabCut: is there now a model file, other than one that already failed to load?"""
        if self.model_path is None:
            return False
        stamp = self._model_file_stamp()
        if stamp is None or stamp == self._rejected:
            return False
        with self._lock:
            if not self._use_model:
                logger.info("cutout: %s has appeared; switching from GrabCut to rembg.", self.model_path)
                self._use_model = True
        return True

    def _rembg_mask(self, rgb: Image.Image) -> tuple[np.ndarray, float]:
        session = self.session()
        work, _ = _working_copy(rgb)
        predicted = session.predict(Image.fromarray(work, mode="RGB"))[0]  # resized to our copy by rembg
        soft = np.asarray(predicted.convert("L"), dtype=np.float32) / 255.0
        binary = _clean_binary(soft >= 0.5)
        decisive = float(np.mean((soft <= 0.1) | (soft >= 0.9)))
        confidence = _confidence(work, binary, decisive)
        return _finish_mask(binary, rgb.size), confidence


def _local_session_class(
    base: type[BaseSession], path: Path, *, model_dir: Path | None, model_name: str
) -> Any:
    """``base`` with its model lookup replaced by "this local file or a clear error": never a download.

    rembg's sessions fetch a missing model in ``download_models``; this override is the only way
    the session finds its file, so no code path can reach the network. Everything else (the
    onnxruntime session with rembg's provider choice, normalisation, ``predict``) is rembg's own.
    """

    def download_models(cls: type, *args: object, **kwargs: object) -> str:
        if not path.is_file():
            raise CutoutModelMissing(model_dir=model_dir, model_name=model_name)
        return str(path)

    def name(cls: type, *args: object, **kwargs: object) -> str:
        return model_name

    return type(
        f"Local{base.__name__}",
        (base,),
        {"download_models": classmethod(download_models), "name": classmethod(name), "__module__": __name__},
    )


_REMOVERS: dict[tuple[str | None, str, bool], BackgroundRemover] = {}
_REMOVERS_LOCK = threading.Lock()


def get_background_remover(
    *, model_dir: Path | None, model_name: str = "u2net", allow_fallback: bool = True
) -> BackgroundRemover:
    """The process's remover for these arguments: created once, so a worker holds one rembg session.

    A constructor error (missing model, no fallback) is raised every time and not cached.
    """
    key = (str(Path(model_dir).resolve()) if model_dir is not None else None, model_name, allow_fallback)
    with _REMOVERS_LOCK:
        remover = _REMOVERS.get(key)
        if remover is None:
            remover = BackgroundRemover(
                model_dir=model_dir, model_name=model_name, allow_fallback=allow_fallback
            )
            _REMOVERS[key] = remover
        return remover


# --- shared mask handling ------------------------------------------------------------------------


def _split(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """(RGB pixels, alpha if the image has real transparency else None)."""
    if image.mode not in ("RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    if image.mode == "RGB":
        return image, None
    alpha = image.getchannel("A")
    rgb = image.convert("RGB")
    lowest, _ = cast(tuple[int, int], alpha.getextrema())
    return rgb, (alpha if lowest < 255 else None)


def _working_copy(rgb: Image.Image) -> tuple[np.ndarray, float]:
    """The photo as an RGB array with its longest side at most WORK_SIDE, and the scale used."""
    array = np.asarray(rgb)
    height, width = array.shape[:2]
    scale = min(1.0, WORK_SIDE / max(width, height))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(array), scale


def _clean_binary(binary: np.ndarray) -> np.ndarray:
    """Drop specks and stray blobs, fill pinholes; keeps real holes (the inside of a mug handle)."""
    mask: np.ndarray = binary.astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros_like(binary, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= _MIN_COMPONENT_SHARE * areas.max()) + 1
    kept = np.isin(labels, keep)
    # Holes: background pieces that do not touch the border. Small ones are glare or noise.
    background = (~kept).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=4)
    height, width = kept.shape
    limit = _MAX_PINHOLE_SHARE * kept.sum()
    for label in range(1, count):
        x, y, w, h, area = stats[label]
        touches_border = x == 0 or y == 0 or x + w == width or y + h == height
        if not touches_border and area <= limit:
            kept[labels == label] = True
    return kept


def _feather_table(feather: int) -> np.ndarray:
    """Alpha for each distance (in pixels) to the background: a ramp over ``feather`` px, then 255."""
    distance = np.arange(256, dtype=np.float32)
    ramp = np.clip((distance - 0.5) / feather, 0.0, 1.0)
    return np.round(ramp * 255.0).astype(np.uint8)


def _finish_mask(binary: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The working-size binary mask as a full-size uint8 mask, interior 255, feathered 1-2 px inward."""
    width, height = size
    mask: np.ndarray = binary.astype(np.uint8) * 255
    if (mask.shape[1], mask.shape[0]) != (width, height):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
        _, mask = cv2.threshold(mask, 127, 255, cv2.THRESH_BINARY)
    if not mask.any():
        return mask
    feather = 1 if max(width, height) <= 2048 else 2
    # Distance of each product pixel to the nearest background pixel (city-block, in whole pixels,
    # which keeps a 12 MP mask cheap): the first ``feather`` pixels ramp up, everything deeper is
    # exactly 255, and nothing outside the product gains any alpha.
    distance = cv2.distanceTransform(mask, cv2.DIST_L1, 3, dstType=cv2.CV_8U)
    return cv2.LUT(distance, _feather_table(feather))


def _trapezoid(value: float, zero_low: float, full_low: float, full_high: float, zero_high: float) -> float:
    if value <= zero_low or value >= zero_high:
        return 0.0
    if value < full_low:
        return (value - zero_low) / (full_low - zero_low)
    if value > full_high:
        return (zero_high - value) / (zero_high - full_high)
    return 1.0


def _confidence_parts(work: np.ndarray, binary: np.ndarray) -> dict[str, float]:
    area = _trapezoid(float(binary.mean()), 0.005, 0.03, 0.85, 0.97)
    ring = np.concatenate([binary[0, :], binary[-1, :], binary[:, 0], binary[:, -1]])
    border = float(np.clip(1.0 - (ring.mean() - 0.15) / 0.35, 0.0, 1.0))
    mask = binary.astype(np.uint8)
    outline = mask.astype(bool) & ~cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    if outline.any():
        grey = cv2.GaussianBlur(cv2.cvtColor(work, cv2.COLOR_RGB2GRAY), (3, 3), 0)
        edges = cv2.Canny(grey, 20, 60)
        near = cv2.dilate(edges, np.ones((2 * _EDGE_TOLERANCE_PX + 1,) * 2, np.uint8)) > 0
        # In a busy photo any outline lies near some edge: count only agreement beyond that chance level.
        chance = float(near.mean())
        edge = float(np.clip((near[outline].mean() - chance) / max(1.0 - chance, 1e-6), 0.0, 1.0))
    else:
        edge = 0.0
    return {"area": area, "border": border, "edges": edge}


def _confidence(work: np.ndarray, binary: np.ndarray, decisive: float) -> float:
    parts = _confidence_parts(work, binary)
    return parts["area"] * parts["border"] * math.sqrt(parts["edges"]) * math.sqrt(decisive)


def _confidence_of_alpha(rgb: Image.Image, alpha: np.ndarray) -> float:
    work, scale = _working_copy(rgb)
    small = alpha
    if scale < 1.0:
        small = cv2.resize(alpha, (work.shape[1], work.shape[0]), interpolation=cv2.INTER_AREA)
    decisive = float(np.mean((alpha == 0) | (alpha == 255)))
    return _confidence(work, small >= 128, decisive)


# --- the GrabCut fallback ------------------------------------------------------------------------


@dataclass
class _Backdrop:
    """How far each pixel is from the fitted backdrop: overall distance, and lightness and chroma apart."""

    distance: np.ndarray  # weighted Lab distance, lightness counting half
    lightness_ratio: np.ndarray  # L / backdrop L (below 1: darker than the backdrop)
    chroma: np.ndarray  # distance in a, b only
    border_distance: np.ndarray  # ``distance`` on the border pixels used for the fit
    border_chroma: np.ndarray


def _fit_backdrop(work: np.ndarray, border: np.ndarray) -> _Backdrop:
    """Fit a smooth backdrop to the border and measure every pixel against it.

    The backdrop is a quadratic surface per Lab channel (studio sweeps have gradients and
    vignettes) fitted by least squares to the outer band, twice: the second fit ignores border
    pixels that the first found far off (a product touching the edge).
    """
    height, width = work.shape[:2]
    lab = cv2.cvtColor(work, cv2.COLOR_RGB2LAB).astype(np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xs / max(width - 1, 1) - 0.5, ys / max(height - 1, 1) - 0.5
    features = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)
    weights = np.array([0.5, 1.0, 1.0], dtype=np.float32)

    def fit(selection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coefficients, *_ = np.linalg.lstsq(features[selection], lab[selection], rcond=None)
        difference = lab - features @ coefficients
        return difference, np.sqrt(((difference * weights) ** 2).sum(axis=-1))

    difference, distance = fit(border)
    inliers = border & (distance <= np.percentile(distance[border], 75) * 3.0 + 1.0)
    if inliers.sum() >= 32:
        difference, distance = fit(inliers)
    else:
        inliers = border
    backdrop_lightness = np.maximum(lab[..., 0] - difference[..., 0], 1.0)
    chroma = np.sqrt(difference[..., 1] ** 2 + difference[..., 2] ** 2)
    return _Backdrop(
        distance=distance,
        lightness_ratio=lab[..., 0] / backdrop_lightness,
        chroma=chroma,
        border_distance=distance[inliers],
        border_chroma=chroma[inliers],
    )


def _grabcut_mask(rgb: Image.Image) -> tuple[np.ndarray, float]:
    work, _ = _working_copy(rgb)
    binary, decisive = _grabcut_binary(work)
    confidence = _confidence(work, binary, decisive)
    return _finish_mask(binary, rgb.size), confidence


def _region_of_interest(candidate: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the candidates' box plus a margin; the whole image if there are none.

    Isolated noise pixels are opened away first so that they do not stretch the box.
    """
    height, width = candidate.shape
    solid = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    ys, xs = np.nonzero(solid)
    if ys.size == 0:
        return 0, height, 0, width
    margin = max(16, round(0.1 * max(int(ys.max() - ys.min()), int(xs.max() - xs.min()))))
    top, bottom = max(0, int(ys.min()) - margin), min(height, int(ys.max()) + 1 + margin)
    left, right = max(0, int(xs.min()) - margin), min(width, int(xs.max()) + 1 + margin)
    return top, bottom, left, right


def _grabcut_binary(work: np.ndarray) -> tuple[np.ndarray, float]:
    """GrabCut seeded from the border: (binary product mask at working size, decisive share)."""
    height, width = work.shape[:2]
    band = max(2, round(0.015 * min(height, width)))
    border = np.zeros((height, width), dtype=bool)
    border[:band, :] = border[-band:, :] = border[:, :band] = border[:, -band:] = True
    backdrop = _fit_backdrop(work, border)
    distance = backdrop.distance
    noise = float(np.percentile(backdrop.border_distance, 99))
    low = max(1.5 * noise, 6.0)  # below: looks like backdrop
    high = max(3.0 * noise, 2.0 * low)  # above: clearly something else
    # A soft shadow on the backdrop is darker but keeps its colour; a product rarely does both.
    chroma_noise = float(np.percentile(backdrop.border_chroma, 99))
    shadow = (backdrop.lightness_ratio < 1.0) & (backdrop.lightness_ratio > 0.55)
    shadow &= backdrop.chroma < max(1.5 * chroma_noise, 4.0)
    candidate = (distance > low) & ~shadow
    # GrabCut's evidence is only as good as the backdrop is plain: a busy border makes every
    # pixel "close to the backdrop" and the split meaningless.
    plain = _trapezoid(float(np.percentile(backdrop.border_distance, 90)), -1.0, 0.0, 8.0, 24.0)
    decisive = plain * float(np.mean((distance < low) | (distance > high) | shadow))

    seeds = np.full((height, width), cv2.GC_PR_BGD, dtype=np.uint8)
    seeds[candidate] = cv2.GC_PR_FGD
    # Backdrop-coloured pixels on the border, and far from anything that stands out, are sure background.
    near_candidate = cv2.dilate(candidate.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    seeds[(border & ~candidate) | ((distance < 0.5 * low) & ~near_candidate)] = cv2.GC_BGD

    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(work, cv2.COLOR_RGB2BGR)
    if candidate.mean() < 0.002 or (seeds == cv2.GC_BGD).all():
        # Nothing stands out from the backdrop: let GrabCut look for something in the middle.
        inset_x, inset_y = max(1, width // 10), max(1, height // 10)
        rect = (inset_x, inset_y, width - 2 * inset_x, height - 2 * inset_y)
        seeds = np.zeros((height, width), dtype=np.uint8)
        cv2.grabCut(
            bgr, seeds, rect, background_model, foreground_model, _GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT
        )
    else:
        # The graph cut costs per pixel: run it on the box around what stands out, with a margin of
        # backdrop for its colour model. Everything outside is backdrop-coloured and far from the product.
        top, bottom, left, right = _region_of_interest(candidate)
        region = np.ascontiguousarray(seeds[top:bottom, left:right])
        no_rect = (0, 0, 0, 0)  # ignored when initialising from the mask
        cv2.grabCut(
            np.ascontiguousarray(bgr[top:bottom, left:right]),
            region,
            no_rect,
            background_model,
            foreground_model,
            _GRABCUT_ITERATIONS,
            cv2.GC_INIT_WITH_MASK,
        )
        seeds[:] = cv2.GC_BGD
        seeds[top:bottom, left:right] = region
    product = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    return _clean_binary(product), decisive
