"""The ControlNet's control image: controlnet-aux's Canny detector on the placed product cutout."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from functools import cache
from typing import Any

import cv2
import numpy as np
from PIL import Image

_import_lock = threading.Lock()


@cache
def _canny_detector_class() -> Any:
    """``controlnet_aux.canny.CannyDetector`` without running ``controlnet_aux/__init__.py``.

    The package's ``__init__`` imports all eighteen detectors (timm, mediapipe warnings, seconds of
    start-up) to re-export them; Canny needs only OpenCV. An unexecuted module object stands in for
    the package while ``controlnet_aux.canny`` (and its ``controlnet_aux.util``) are imported, then
    it is removed again: a later plain ``import controlnet_aux`` runs the real ``__init__``, which
    finds these two submodules already imported and reuses them.
    """
    with _import_lock:
        if "controlnet_aux" in sys.modules:
            return importlib.import_module("controlnet_aux.canny").CannyDetector
        spec = importlib.util.find_spec("controlnet_aux")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("controlnet-aux is not installed (pip install controlnet-aux)")
        stand_in = importlib.util.module_from_spec(spec)
        sys.modules["controlnet_aux"] = stand_in
        try:
            return importlib.import_module("controlnet_aux.canny").CannyDetector
        finally:
            if sys.modules.get("controlnet_aux") is stand_in:
                del sys.modules["controlnet_aux"]


def canny_control_image(
    product_layer: Image.Image,
    *,
    low_threshold: int = 100,
    high_threshold: int = 200,
) -> Image.Image:
    """An RGB edge map of ``product_layer`` (RGBA, already placed at the generation size).

    Two passes of controlnet-aux's Canny detector, merged: one on the product's colours over white
    (its inner edges: labels, seams, facets) and one on its alpha channel (its silhouette, which
    colour alone misses when the product is as light as the backdrop). Same size as the input.
    """
    detector = _canny_detector_class()()
    rgba = np.asarray(product_layer.convert("RGBA"), dtype=np.uint8)
    height, width = rgba.shape[:2]
    # The detector resizes so that the short side equals the resolution, in multiples of 64: give it
    # the short side and put the map back to the exact size afterwards.
    resolution = min(width, height)
    edges = []
    for source in (rgba, np.ascontiguousarray(rgba[:, :, 3])):
        edge_map = detector(
            input_image=source,
            low_threshold=low_threshold,
            high_threshold=high_threshold,
            detect_resolution=resolution,
            image_resolution=resolution,
            output_type="np",
        )
        if edge_map.shape[:2] != (height, width):
            edge_map = cv2.resize(edge_map, (width, height), interpolation=cv2.INTER_NEAREST)
        edges.append(edge_map)
    return Image.fromarray(np.maximum(edges[0], edges[1]))
