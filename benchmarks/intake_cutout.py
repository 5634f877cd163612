"""Benchmark: upload intake and background removal. Prints a table (device, date, median of N repeats).

    python benchmarks/intake_cutout.py [--repeats 7]

Intake: a 12 MP (4000x3000) JPEG product photo with realistic noise and texture, validated and
normalised (``image_validate``), and the same plus ``encode_png`` (what the upload door stores).
Cutout: the GrabCut fallback and rembg's session code on the tiny u2net-shaped model, on a
~12 MP and a ~1 MP photo. The tiny model costs what a 320x320 u2net input's pre- and
post-processing cost, not what the real u2net network costs; the real model's inference time
has to be measured with its weights. Nothing is downloaded; test images are made on the spot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_runtime.cutout import BackgroundRemover  # noqa: E402
from gpu_runtime.tiny_cutout import build_tiny_u2net_onnx  # noqa: E402
from mockups.jobs.intake import image_validate  # noqa: E402
from tests.images import product_photo  # noqa: E402


def _device() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    providers = ",".join(p.removesuffix("ExecutionProvider") for p in onnxruntime.get_available_providers())
    return f"{cpu}, {os.cpu_count()} cores; onnxruntime {onnxruntime.__version__} [{providers}]"


def _median_seconds(work: Callable[[], object], repeats: int, warmups: int = 1) -> float:
    for _ in range(warmups):
        work()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per row (median reported)")
    args = parser.parse_args()
    repeats = max(1, args.repeats)

    big = product_photo("bottle", width=4000, height=3000, seed=1).image
    small = product_photo("jar", width=1152, height=864, seed=2).image
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=92)
    jpeg = buffer.getvalue()

    rows: list[tuple[str, float, str]] = []
    seconds = _median_seconds(lambda: image_validate(data=jpeg), repeats)
    rows.append((f"intake: validate + normalise 12 MP JPEG ({len(jpeg) / 1e6:.1f} MB)", seconds, "uploads/s"))
    seconds = _median_seconds(lambda: image_validate(data=jpeg).encode_png(), repeats)
    png_size = len(image_validate(data=jpeg).encode_png())
    rows.append((f"intake: ... + encode_png ({png_size / 1e6:.1f} MB PNG)", seconds, "uploads/s"))

    with tempfile.TemporaryDirectory() as folder:
        build_tiny_u2net_onnx(Path(folder) / "u2net.onnx")
        rembg = BackgroundRemover(model_dir=Path(folder), allow_fallback=False)
        rembg.load()
        grabcut = BackgroundRemover(model_dir=Path(folder) / "none", allow_fallback=True)
        for name, remover in (("grabcut", grabcut), ("rembg tiny u2net", rembg)):
            for label, image in (("12 MP", big), ("1 MP", small)):
                seconds = _median_seconds(functools.partial(remover.remove_background, image), repeats)
                rows.append((f"cutout: {name}, {label} ({image.width}x{image.height})", seconds, "images/s"))

    print(f"device: {_device()}")
    print(f"date:   {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    print(f"median of {repeats} runs (after one warm-up run)\n")
    width = max(len(name) for name, _, _ in rows)
    print(f"{'case'.ljust(width)}  {'median s':>9}  {'rate':>14}")
    for name, seconds, unit in rows:
        print(f"{name.ljust(width)}  {seconds:9.3f}  {1 / seconds:8.2f} {unit}")


if __name__ == "__main__":
    main()
