"""Background removal: rembg's real session code on a tiny local model, the GrabCut fallback, existing alpha.

No mocks: the rembg path loads a tiny u2net-shaped ONNX model built here with the ``onnx``
helper API through rembg's own session classes and onnxruntime. Nothing is downloaded.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from PIL import Image

from gpu_runtime.cutout import (
    BackgroundRemover,
    CutoutModelMissing,
    CutoutModelUnusable,
    CutoutResult,
    get_background_remover,
)
from gpu_runtime.tiny_cutout import build_tiny_u2net_onnx
from tests.images import PRODUCT_KINDS, blank_studio_photo, busy_photo, iou, product_photo


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rembg-models")
    build_tiny_u2net_onnx(folder / "u2net.onnx")
    return folder


@pytest.fixture(scope="session")
def rembg_remover(model_dir: Path) -> BackgroundRemover:
    return BackgroundRemover(model_dir=model_dir, model_name="u2net", allow_fallback=False)


@pytest.fixture(scope="session")
def grabcut_remover(tmp_path_factory: pytest.TempPathFactory) -> BackgroundRemover:
    return BackgroundRemover(model_dir=tmp_path_factory.mktemp("empty-models"), allow_fallback=True)


def _assert_is_a_cutout_of(result: CutoutResult, image: Image.Image) -> None:
    assert result.rgba.mode == "RGBA" and result.rgba.size == image.size
    assert result.mask.mode == "L" and result.mask.size == image.size
    assert result.rgba.convert("RGB").tobytes() == image.convert("RGB").tobytes()  # the photo's own pixels
    assert result.rgba.getchannel("A").tobytes() == result.mask.tobytes()
    assert 0.0 <= result.confidence <= 1.0
    assert result.seconds > 0.0


def _interior_and_exterior(truth: np.ndarray, margin: int = 4) -> tuple[np.ndarray, np.ndarray]:
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    interior = cv2.erode(truth.astype(np.uint8), kernel) > 0
    exterior = cv2.dilate(truth.astype(np.uint8), kernel) == 0
    return interior, exterior


def test_the_tiny_model_has_u2nets_signature_and_is_built_the_same_every_time(
    model_dir: Path, tmp_path: Path
) -> None:
    model = onnx.load(str(model_dir / "u2net.onnx"))
    (graph_input,) = model.graph.input
    assert graph_input.name == "input.1"
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim] == [1, 3, 320, 320]
    assert len(model.graph.output) == 7
    for output in model.graph.output:
        assert [d.dim_value for d in output.type.tensor_type.shape.dim] == [1, 1, 320, 320]
    again = build_tiny_u2net_onnx(tmp_path / "again" / "u2net.onnx")
    assert again.read_bytes() == (model_dir / "u2net.onnx").read_bytes()


def test_rembgs_real_session_loads_the_tiny_model_from_the_folder_and_cuts_out_a_product(
    rembg_remover: BackgroundRemover, model_dir: Path
) -> None:
    from rembg.sessions.base import BaseSession
    from rembg.sessions.u2net import U2netSession

    photo = product_photo("jar")
    result = rembg_remover.remove_background(photo.image)

    assert result.method == "rembg:u2net"
    _assert_is_a_cutout_of(result, photo.image)
    session = rembg_remover.session()
    assert isinstance(session, U2netSession) and isinstance(session, BaseSession)
    assert Path(session.inner_session._model_path) == model_dir / "u2net.onnx"
    # The tiny model is a "darker than the backdrop" detector: on a coloured jar it is close.
    assert iou(np.asarray(result.mask) >= 128, photo.mask) >= 0.9
    health = rembg_remover.health()
    assert health["method"] == "rembg:u2net" and health["loaded"] is True and health["model_exists"] is True
    assert health["model_path"] == str(model_dir / "u2net.onnx") and health["last_error"] is None


def test_the_session_is_created_once_and_reused_by_every_call(model_dir: Path) -> None:
    remover = BackgroundRemover(model_dir=model_dir, allow_fallback=False)
    assert remover.health()["loaded"] is False  # nothing loaded until first use (or load())
    photo = product_photo("bottle", width=256, height=192)
    remover.remove_background(photo.image)
    first = remover.session()
    remover.remove_background(photo.image)
    remover.load()
    assert remover.session() is first


def test_threads_racing_for_the_first_session_all_get_the_same_one(model_dir: Path) -> None:
    remover = BackgroundRemover(model_dir=model_dir, allow_fallback=False)
    start = threading.Barrier(6)
    sessions: list[object] = []

    def grab() -> None:
        start.wait()
        sessions.append(remover.session())

    threads = [threading.Thread(target=grab) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sessions) == 6 and all(session is sessions[0] for session in sessions)


def test_the_process_wide_cache_gives_one_remover_per_configuration(model_dir: Path, tmp_path: Path) -> None:
    one = get_background_remover(model_dir=model_dir, model_name="u2net", allow_fallback=False)
    assert get_background_remover(model_dir=model_dir, model_name="u2net", allow_fallback=False) is one
    other = get_background_remover(model_dir=tmp_path, model_name="u2net", allow_fallback=True)
    assert other is not one and other.method == "grabcut"


def test_a_missing_model_without_fallback_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(CutoutModelMissing) as caught:
        BackgroundRemover(model_dir=tmp_path / "models", model_name="u2net", allow_fallback=False)
    message = str(caught.value)
    assert str(tmp_path / "models" / "u2net.onnx") in message
    assert "never downloaded" in message
    assert caught.value.path == tmp_path / "models" / "u2net.onnx"


def test_no_model_folder_at_all_without_fallback_is_a_clear_error() -> None:
    with pytest.raises(CutoutModelMissing, match="no model folder is configured"):
        get_background_remover(model_dir=None, allow_fallback=False)


def test_a_missing_model_with_fallback_says_so_in_health_and_uses_grabcut(tmp_path: Path) -> None:
    remover = BackgroundRemover(model_dir=tmp_path, model_name="u2net", allow_fallback=True)
    health = remover.health()
    assert health["method"] == "grabcut"
    assert health["model_exists"] is False and health["loaded"] is False
    assert health["model_path"] == str(tmp_path / "u2net.onnx")
    assert str(tmp_path / "u2net.onnx") in str(health["last_error"])
    result = remover.remove_background(product_photo("mug", width=256, height=192).image)
    assert result.method == "grabcut"


def test_a_model_file_that_vanishes_before_first_use_is_an_error_never_a_download(
    model_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(model_dir / "u2net.onnx", tmp_path / "u2net.onnx")
    remover = BackgroundRemover(model_dir=tmp_path, allow_fallback=False)
    (tmp_path / "u2net.onnx").unlink()
    with pytest.raises(CutoutModelMissing, match=str(tmp_path / "u2net.onnx")):
        remover.remove_background(product_photo("jar", width=256, height=192).image)
    assert not any(tmp_path.iterdir())  # rembg did not fetch anything into the folder


def test_a_model_file_onnxruntime_cannot_read_is_a_clear_error_or_a_fallback(tmp_path: Path) -> None:
    (tmp_path / "u2net.onnx").write_bytes(b"this is not an onnx model" * 10)
    strict = BackgroundRemover(model_dir=tmp_path, allow_fallback=False)
    with pytest.raises(CutoutModelUnusable, match="could not be loaded"):
        strict.remove_background(product_photo("jar", width=256, height=192).image)

    lenient = BackgroundRemover(model_dir=tmp_path, allow_fallback=True)
    result = lenient.remove_background(product_photo("jar", width=256, height=192).image)
    assert result.method == "grabcut"
    assert lenient.health()["method"] == "grabcut"
    assert "could not load" in str(lenient.health()["last_error"])


def test_a_model_file_put_in_place_after_start_is_used_from_the_next_photo_on(
    model_dir: Path, tmp_path: Path
) -> None:
    remover = BackgroundRemover(model_dir=tmp_path, model_name="u2net", allow_fallback=True)
    photo = product_photo("bottle", width=256, height=192).image
    assert remover.remove_background(photo).method == "grabcut"

    shutil.copy(model_dir / "u2net.onnx", tmp_path / "u2net.onnx")

    assert remover.remove_background(photo).method == "rembg:u2net"
    health = remover.health()
    assert health["method"] == "rembg:u2net" and health["loaded"] is True
    assert health["last_error"] is None


def test_a_broken_model_file_is_tried_once_and_again_only_when_it_is_replaced(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "u2net.onnx").write_bytes(b"this is not an onnx model" * 10)
    remover = BackgroundRemover(model_dir=tmp_path, model_name="u2net", allow_fallback=True)
    photo = product_photo("jar", width=256, height=192).image

    with caplog.at_level("ERROR", logger="gpu_runtime.cutout"):
        methods = [remover.remove_background(photo).method for _ in range(3)]
    assert methods == ["grabcut"] * 3
    assert sum("Falling back to GrabCut" in record.message for record in caplog.records) == 1

    shutil.copy(model_dir / "u2net.onnx", tmp_path / "u2net.onnx")

    assert remover.remove_background(photo).method == "rembg:u2net"
    assert remover.health()["last_error"] is None


@pytest.mark.parametrize("kind", PRODUCT_KINDS)
def test_grabcut_separates_a_product_from_a_studio_backdrop(
    kind: str, grabcut_remover: BackgroundRemover
) -> None:
    photo = product_photo(kind, seed=11)  # type: ignore[arg-type]
    result = grabcut_remover.remove_background(photo.image)

    assert result.method == "grabcut"
    _assert_is_a_cutout_of(result, photo.image)
    mask = np.asarray(result.mask)
    assert iou(mask >= 128, photo.mask) >= 0.9
    interior, exterior = _interior_and_exterior(photo.mask)
    assert np.mean(mask[interior] == 255) >= 0.99  # the product's inside is fully opaque
    assert np.mean(mask[exterior] == 0) >= 0.99  # the backdrop (shadow included) is fully transparent
    assert result.confidence >= 0.7


def test_the_hole_through_a_mug_handle_stays_background(grabcut_remover: BackgroundRemover) -> None:
    photo = product_photo("mug", seed=2)
    mask = np.asarray(grabcut_remover.remove_background(photo.image).mask)
    height, width = photo.mask.shape
    # The hole is the background region enclosed by the product.
    count, labels = cv2.connectedComponents((~photo.mask).astype(np.uint8), connectivity=4)
    outside = labels[0, 0]
    hole = (labels != outside) & ~photo.mask
    hole_inside, _ = _interior_and_exterior(hole, margin=2)
    assert hole_inside.sum() > 100
    assert np.mean(mask[hole_inside] == 0) >= 0.95


def test_edges_are_feathered_inward_only(grabcut_remover: BackgroundRemover) -> None:
    photo = product_photo("bottle", seed=4)
    mask = np.asarray(grabcut_remover.remove_background(photo.image).mask)
    partial = (mask > 0) & (mask < 255)
    assert partial.any()
    # Every partly transparent pixel is within 2 px of a fully transparent one: a 1-2 px edge, no halo.
    distance_to_background = cv2.distanceTransform((mask > 0).astype(np.uint8), cv2.DIST_L2, 3)
    assert distance_to_background[partial].max() <= 2.0


def test_a_large_photo_is_masked_on_a_small_copy_and_the_mask_comes_back_full_size(
    grabcut_remover: BackgroundRemover,
) -> None:
    photo = product_photo("jar", width=2400, height=1800, seed=5)
    result = grabcut_remover.remove_background(photo.image)
    assert result.mask.size == (2400, 1800)
    mask = np.asarray(result.mask)
    assert iou(mask >= 128, photo.mask) >= 0.9
    interior, _ = _interior_and_exterior(photo.mask, margin=8)
    assert np.mean(mask[interior] == 255) >= 0.99


def test_a_photo_with_nothing_on_it_gets_a_low_confidence(grabcut_remover: BackgroundRemover) -> None:
    result = grabcut_remover.remove_background(blank_studio_photo(seed=9))
    assert result.confidence <= 0.2


def test_a_busy_photo_without_a_backdrop_gets_a_low_confidence_from_grabcut(
    grabcut_remover: BackgroundRemover,
) -> None:
    result = grabcut_remover.remove_background(busy_photo())
    assert result.confidence <= 0.2


@pytest.mark.parametrize("remover_name", ["rembg_remover", "grabcut_remover"])
def test_an_rgba_photo_with_transparency_keeps_its_alpha(
    remover_name: str, request: pytest.FixtureRequest
) -> None:
    remover: BackgroundRemover = request.getfixturevalue(remover_name)
    photo = product_photo("bottle", seed=6)
    alpha = cv2.GaussianBlur(photo.mask.astype(np.uint8) * 255, (5, 5), 0)
    rgba = photo.image.copy()
    rgba.putalpha(Image.fromarray(alpha, mode="L"))

    result = remover.remove_background(rgba)

    assert result.method == "alpha"
    assert np.array_equal(np.asarray(result.mask), alpha)
    assert result.rgba.tobytes() == rgba.tobytes()
    assert result.confidence >= 0.5


def test_an_rgba_photo_that_is_fully_opaque_is_cut_out_like_an_rgb_one(
    grabcut_remover: BackgroundRemover,
) -> None:
    photo = product_photo("jar", seed=7)
    result = grabcut_remover.remove_background(photo.image.convert("RGBA"))
    assert result.method == "grabcut"
    assert iou(np.asarray(result.mask) >= 128, photo.mask) >= 0.9


def test_a_greyscale_photo_is_accepted(grabcut_remover: BackgroundRemover) -> None:
    photo = product_photo("mug", seed=8)
    result = grabcut_remover.remove_background(photo.image.convert("L"))
    assert result.rgba.mode == "RGBA" and result.rgba.size == photo.image.size
