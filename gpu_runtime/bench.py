"""Benchmark: our resident engine against the naive server, on random weights (a script, not a test).

    python -m gpu_runtime.bench [--full] [--repeats N] [--json PATH] [--compile | --no-compile]
                                [--compile-mode MODE] [--save-dir DIR] [--peak-tflops 790]
                                [--parts ours,eager,naive] [--compare EARLIER.json] [--steps N]

On CUDA it builds full-size SDXL base, the SDXL canny ControlNet, the SDXL VAE and both CLIP text
encoders from the published configs (``gpu_runtime.configs``) with random weights, directly on the
GPU in the working dtype (nothing is downloaded; nothing is saved unless ``--save-dir`` is given),
and times, as medians over ``--repeats`` after a warm-up:

* our engine: one job of 5 generated variations, 1024x1024, 30 steps, CFG, ControlNet, end to end
  (composited, encoded and verified PNGs) and its GPU part; images per hour;
* the naive server migration guides show: the plain ``StableDiffusionXLControlNetPipeline`` called
  five times in a row, fp16, SDPA, no batching, no compile; and the ratio between the two;
* the fraction of the compute floor reached (5 x 597 TFLOP at ``--peak-tflops``; the UNet and
  ControlNet FLOPs per forward are also counted with torch's FlopCounterMode as a cross-check);
* LoRA switch time p50/p95 (warm, from RAM) and whether anything recompiled;
* process start to ready, and engine start (assembly, LoRA slot, compile, warm-up); with
  ``--save-dir`` also a fresh process loading the saved models from disk with a warm compile cache;
* peak GPU memory.

Without CUDA it runs the same measurements on the tiny models at a scaled-down shape (128x128
generation, same steps and variations) so it always works, and says so; its figures are not
comparable with the targets. Figures print as a table with the device and the date.

A GPU lease may allow only minutes per command, so the run splits: ``--parts naive`` in one command
and ``--parts ours,eager --compare naive.json`` in the next gives the same table, the speed-up
included (``--compare`` takes the figures this run skipped from an earlier run's ``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_IMPORTED_AT = time.time()

import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

from gpu_runtime.compose import generation_inputs, preset_get  # noqa: E402
from gpu_runtime.configs import (  # noqa: E402
    clip_l_text_config,
    openclip_bigg_text_config,
    sdxl_controlnet_canny_config,
    sdxl_scheduler_config,
    sdxl_unet_config,
    sdxl_vae_config,
)
from gpu_runtime.control import canny_control_image  # noqa: E402
from gpu_runtime.engine import Engine, EngineConfig, SdxlComponents, compiled_graph_count  # noqa: E402
from gpu_runtime.lora import file_sha256  # noqa: E402
from gpu_runtime.tiny import (  # noqa: E402
    BASE_SUBDIR,
    CONTROLNET_SUBDIR,
    build_clip_tokenizers,
    build_tiny_lora,
    ensure_tiny_models,
    tiny_unet_config,
)
from gpu_runtime.types import Event, GenerateRequest, LoraSpec, StepEvent, VariationSpec  # noqa: E402

# One 1024x1024 image, 30 steps with CFG: (UNet 6.76 + ControlNet 3.02 TFLOP per forward) x 2 x 30,
# plus the VAE decode (10.5 TFLOP).
TFLOP_PER_IMAGE = (6.76 + 3.02) * 2 * 30 + 10.5
TARGET_JOB_SECONDS = 8.0
GOAL_JOB_SECONDS = 5.0
TARGET_SPEEDUP = 2.0
TARGET_SWITCH_MS = 100.0
TARGET_READY_SECONDS = 30.0


def process_age_seconds() -> float:
    """Seconds since this process started (Linux /proc), else since this module was imported."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time() - _IMPORTED_AT


@dataclass(frozen=True)
class Shape:
    full: bool
    width: int
    height: int
    steps: int = 30
    variations: int = 5
    guidance: float = 6.0
    controlnet_scale: float = 0.7

    @property
    def label(self) -> str:
        kind = "full SDXL" if self.full else "scaled-down (tiny models, CPU)"
        return (
            f"{kind}: {self.variations} variations, {self.width}x{self.height}, {self.steps} steps, "
            f"CFG {self.guidance:g}, ControlNet canny"
        )


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, label: str, value: Any, shown: str, target: str = "") -> None:
        self.figures[key] = value
        self.rows.append((label, shown, target))


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- models -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _building_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """New parameters are created on ``device`` in ``dtype``: no fp32 CPU detour for 2.6 B weights."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_full_components(device: torch.device, dtype: torch.dtype, *, seed: int = 0) -> SdxlComponents:
    """Full-size SDXL + canny ControlNet + VAE + both text encoders with random weights."""
    from diffusers import AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    with _building_on(device, dtype):
        unet = UNet2DConditionModel.from_config(sdxl_unet_config())
        controlnet = ControlNetModel.from_config(sdxl_controlnet_canny_config())
        vae = AutoencoderKL.from_config(sdxl_vae_config())
        text_encoder = CLIPTextModel(CLIPTextConfig(**clip_l_text_config()))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**openclip_bigg_text_config()))
    with tempfile.TemporaryDirectory() as folder:
        tokenizer, tokenizer_2 = build_clip_tokenizers(Path(folder))
    return SdxlComponents(
        unet=unet,
        controlnet=controlnet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=EulerDiscreteScheduler.from_config(sdxl_scheduler_config()),
    )


def load_tiny_components(folder: Path, device: torch.device, dtype: torch.dtype) -> SdxlComponents:
    """The tiny models' components, loaded from their folder (for the naive pipeline on CPU)."""
    from diffusers import ControlNetModel, StableDiffusionXLPipeline

    base: Any = StableDiffusionXLPipeline.from_pretrained(
        folder / BASE_SUBDIR, torch_dtype=dtype, local_files_only=True
    )
    controlnet = ControlNetModel.from_pretrained(
        folder / CONTROLNET_SUBDIR, torch_dtype=dtype, local_files_only=True
    )
    return SdxlComponents(
        unet=base.unet.to(device),
        controlnet=controlnet.to(device),
        vae=base.vae.to(device),
        text_encoder=base.text_encoder.to(device),
        text_encoder_2=base.text_encoder_2.to(device),
        tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2,
        scheduler=base.scheduler,
    )


def save_components(components: SdxlComponents, folder: Path) -> None:
    """Saves in the diffusers layout the engine loads (``sdxl/`` and ``controlnet/``)."""
    from diffusers import StableDiffusionXLPipeline

    pipeline: Any = StableDiffusionXLPipeline(
        **components.sdxl_parts(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipeline.save_pretrained(folder / BASE_SUBDIR)
    components.controlnet.save_pretrained(folder / CONTROLNET_SUBDIR)


def _release_memory() -> None:
    """After the caller dropped its references: forget compiled graphs, collect, return GPU memory."""
    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def count_tflop_per_forward(
    components: SdxlComponents, shape: Shape, device: torch.device
) -> tuple[float, float]:
    """UNet and ControlNet TFLOP of one forward for one image at ``shape``, by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    unet, controlnet = components.unet, components.controlnet
    dtype = unet.dtype
    latent = torch.randn(1, 4, shape.height // 8, shape.width // 8, device=device, dtype=dtype)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    pooled_dim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    added = {
        "text_embeds": torch.randn(1, pooled_dim, device=device, dtype=dtype),
        "time_ids": torch.zeros(1, 6, device=device, dtype=dtype),
    }
    control = torch.zeros(1, 3, shape.height, shape.width, device=device, dtype=dtype)
    timestep = torch.tensor([500], device=device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            down, mid = controlnet(
                latent,
                timestep,
                encoder_hidden_states=context,
                controlnet_cond=control,
                added_cond_kwargs=added,
                return_dict=False,
            )
        controlnet_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            unet(
                latent,
                timestep,
                encoder_hidden_states=context,
                added_cond_kwargs=added,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            )
        unet_flops = counter.get_total_flops()
    return unet_flops / 1e12, controlnet_flops / 1e12


# --- workloads ----------------------------------------------------------------------------------


def bench_product() -> Image.Image:
    """A synthetic product photo (bottle with label), alpha = a soft-edged cutout mask."""
    width, height = 768, 1024
    photo = Image.new("RGB", (width, height), (200, 184, 160))
    draw = ImageDraw.Draw(photo)
    for y in range(120, 960):
        draw.line((250, y, 518, y), fill=(40 + y % 70, 100 + y % 50, 150 - y % 60))
    draw.rectangle((270, 480, 498, 680), fill=(240, 236, 222))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rounded_rectangle((250, 120, 518, 960), radius=80, fill=255)
    product = photo.convert("RGBA")
    product.putalpha(mask.filter(ImageFilter.GaussianBlur(3)))
    return product


def job_request(shape: Shape, product: Image.Image, loras: tuple[LoraSpec, ...] = ()) -> GenerateRequest:
    variations = [
        VariationSpec(
            index=i,
            seed=1000 + i,
            prompt=f"a product photo on a marble counter, soft window light, scene {i}",
            negative_prompt="blurry, text, watermark",
            steps=shape.steps,
            guidance=shape.guidance,
            controlnet_scale=shape.controlnet_scale,
            loras=loras,
        )
        for i in range(shape.variations)
    ]
    return GenerateRequest(product_rgba=product, variations=variations, size=(shape.width, shape.height))


@dataclass
class JobTiming:
    job_seconds: float
    gpu_seconds: float
    denoise_seconds: float


def time_engine_job(engine: Engine, request: GenerateRequest) -> JobTiming:
    step_times: list[float] = []

    def on_event(event: Event) -> None:
        if isinstance(event, StepEvent):
            step_times.append(time.perf_counter())

    _sync()
    started = time.perf_counter()
    results = engine.generate(request, on_event=on_event)
    _sync()
    finished = time.perf_counter()
    if any(result.fidelity_max_delta for result in results):
        raise RuntimeError("a benchmark image failed the pixel-exact check")
    return JobTiming(
        job_seconds=finished - started,
        gpu_seconds=sum(result.gpu_seconds for result in results),
        denoise_seconds=(step_times[-1] - step_times[0]) * len(step_times) / max(1, len(step_times) - 1),
    )


def time_engine(engine: Engine, request: GenerateRequest, repeats: int) -> dict[str, float]:
    """Median timings over ``repeats`` jobs, after one untimed warm-up job at the same shape."""
    time_engine_job(engine, request)
    timings = [time_engine_job(engine, request) for _ in range(repeats)]
    return {
        "job_seconds": statistics.median(t.job_seconds for t in timings),
        "gpu_seconds": statistics.median(t.gpu_seconds for t in timings),
        "denoise_seconds": statistics.median(t.denoise_seconds for t in timings),
        "job_seconds_all": [round(t.job_seconds, 3) for t in timings],  # type: ignore[dict-item]
    }


def time_naive(
    components: SdxlComponents, shape: Shape, product: Image.Image, repeats: int, device: torch.device
) -> dict[str, float]:
    """The plain ``StableDiffusionXLControlNetPipeline`` called once per image, as guides show it."""
    from diffusers import StableDiffusionXLControlNetPipeline

    pipe: Any = StableDiffusionXLControlNetPipeline(
        **components.sdxl_parts(), controlnet=components.controlnet, add_watermarker=False
    )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    inputs = generation_inputs(product, preset_get("square_1024"), (shape.width, shape.height))
    control = canny_control_image(inputs.product_layer)

    def one_image(seed: int) -> None:
        pipe(
            prompt="a product photo on a marble counter, soft window light",
            negative_prompt="blurry, text, watermark",
            image=control,
            width=shape.width,
            height=shape.height,
            num_inference_steps=shape.steps,
            guidance_scale=shape.guidance,
            controlnet_conditioning_scale=shape.controlnet_scale,
            generator=torch.Generator(device=device).manual_seed(seed),
        )

    def one_job() -> float:
        _sync()
        started = time.perf_counter()
        for i in range(shape.variations):
            one_image(1000 + i)
        _sync()
        return time.perf_counter() - started

    one_image(0)  # warm-up: kernels, cuDNN algorithm choice
    timings = [one_job() for _ in range(repeats)]
    return {"job_seconds": statistics.median(timings), "job_seconds_all": [round(t, 3) for t in timings]}  # type: ignore[dict-item]


def measure_lora_switching(
    engine: Engine, shape: Shape, product: Image.Image, folder: Path, *, count: int = 4, switches: int = 24
) -> dict[str, Any]:
    """Cold loads, then warm switches between ``count`` LoRAs (and none); recompiles across them."""
    unet_config = sdxl_unet_config() if shape.full else tiny_unet_config()
    rank = 32 if shape.full else 4
    specs = []
    for i in range(count):
        path = build_tiny_lora(folder / f"style-{i}.safetensors", unet_config, rank=rank, seed=i, scale=0.3)
        specs.append(LoraSpec(name=f"style-{i}", path=str(path), sha256=file_sha256(path), weight=0.8))
    manager = engine.loras
    cold = []
    for lora in specs:
        started = time.perf_counter()
        engine.lora_preload(lora)
        cold.append(time.perf_counter() - started)
    graphs_before = compiled_graph_count()
    manager.reset_stats()
    order: list[tuple[LoraSpec, ...]] = [(lora,) for lora in specs] + [()]
    for i in range(switches):
        engine.lora_switch(order[i % len(order)])
    stats = manager.stats()
    # A real job with a switched-in LoRA, then one without: any recompilation would show here.
    time_engine_job(engine, job_request(shape, product, (specs[1],)))
    time_engine_job(engine, job_request(shape, product))
    return {
        "mode": stats["mode"],
        "lora_rank": rank,
        "lora_file_mb": round(Path(specs[0].path).stat().st_size / 1024**2, 1),
        "cold_load_ms_median": statistics.median(cold) * 1000,
        "switch_p50_ms": stats["warm_switch_p50_ms"],
        "switch_p95_ms": stats["warm_switch_p95_ms"],
        "switches": stats["switches"],
        "graphs_added": compiled_graph_count() - graphs_before,
    }


def peak_memory_gib() -> float | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 1024**3


def probe_start(args: argparse.Namespace) -> None:
    """Child process: start an engine from saved models and print its process-start-to-ready."""
    folder = Path(args.probe_start)
    compile_enabled = bool(args.compile)
    if args.small:
        config = EngineConfig(
            kind="tiny", tiny_dir=folder, compile=compile_enabled, compile_mode=args.compile_mode
        )
    else:
        config = EngineConfig(
            kind="sdxl",
            base_model=str(folder / BASE_SUBDIR),
            controlnet=str(folder / CONTROLNET_SUBDIR),
            compile=compile_enabled,
            compile_mode=args.compile_mode,
        )
    engine = Engine.start(config)
    print(
        json.dumps(
            {"process_to_ready_s": process_age_seconds(), "engine_start_s": engine.health()["start_seconds"]}
        )
    )


# --- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Report:
    report = Report()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    full = cuda and not args.small
    if args.full and not cuda:
        report.notes.append("--full asked for, but there is no CUDA device: running the scaled-down shape.")
    size = 1024 if full else 128
    shape = Shape(full=full, width=size, height=size, steps=args.steps)
    parts = set(args.parts)
    earlier = _earlier_figures(args.compare, shape, report)  # before any work: a wrong file fails fast
    compile_enabled = args.compile if args.compile is not None else cuda
    dtype = torch.bfloat16 if cuda else torch.float32
    product = bench_product()
    report.figures["shape"] = shape.label
    report.figures["compile"] = args.compile_mode if compile_enabled else "off"

    with tempfile.TemporaryDirectory(prefix="mockup-bench-") as scratch_name:
        scratch = Path(scratch_name)
        tiny_dir = None
        if not full:
            tiny_dir = ensure_tiny_models(Path(args.save_dir) if args.save_dir else scratch / "tiny")

        # 1. Our engine, first in the process so that its start-to-ready is clean.
        components: SdxlComponents | None = None
        health: dict[str, object] | None = None
        ready_age: float | None = None
        ours: dict[str, float] | None = None
        lora: dict[str, Any] | None = None
        peak: float | None = None
        if "ours" in parts:
            if full:
                components = build_full_components(device, dtype, seed=0)
                if args.save_dir:
                    save_components(components, Path(args.save_dir))
                config = EngineConfig(
                    kind="sdxl", dtype="bf16", compile=compile_enabled, compile_mode=args.compile_mode
                )
                engine = Engine.from_components(config, components)
            else:
                config = EngineConfig(
                    kind="tiny", tiny_dir=tiny_dir, compile=compile_enabled, compile_mode=args.compile_mode
                )
                engine = Engine.start(config)
            ready_age = process_age_seconds()
            health = engine.health()
            graphs_after_warmup = compiled_graph_count()
            ours = time_engine(engine, job_request(shape, product), args.repeats)
            lora = measure_lora_switching(engine, shape, product, scratch)
            report.figures["graphs_after_warmup"] = graphs_after_warmup
            report.figures["graphs_after_all_jobs"] = compiled_graph_count()
            peak = peak_memory_gib()
            engine.close()
            del engine
            components = None
            _release_memory()

        # 2. The eager engine, for what compiling buys (only when the first one was compiled).
        eager: dict[str, float] | None = None
        if compile_enabled and "eager" in parts:
            eager_config = EngineConfig(kind="sdxl" if full else "tiny", tiny_dir=tiny_dir, compile=False)
            if full:
                eager_engine = Engine.from_components(
                    eager_config, build_full_components(device, dtype, seed=1)
                )
            else:
                eager_engine = Engine.start(eager_config)
            eager = time_engine(eager_engine, job_request(shape, product), args.repeats)
            eager_engine.close()
            del eager_engine
            _release_memory()

        # 3. The naive server: fp16 on CUDA (what the guides use), fp32 on CPU.
        naive: dict[str, float] | None = None
        flops: tuple[float, float] | None = None
        if "naive" in parts:
            naive_dtype = torch.float16 if cuda else torch.float32
            if full:
                naive_components = build_full_components(device, naive_dtype, seed=2)
            else:
                assert tiny_dir is not None
                naive_components = load_tiny_components(tiny_dir, device, naive_dtype)
            flops = count_tflop_per_forward(naive_components, shape, device)
            naive = time_naive(naive_components, shape, product, args.repeats, device)
            del naive_components
            _release_memory()

        # 4. A fresh process loading the saved models from disk, with a warm compile cache.
        probe: dict[str, float] | None = None
        if args.save_dir and "ours" in parts:
            command = [sys.executable, "-m", "gpu_runtime.bench", "--probe-start", str(args.save_dir)]
            command += [
                "--compile" if compile_enabled else "--no-compile",
                "--compile-mode",
                args.compile_mode,
            ]
            if not full:
                command.append("--small")
            command += ["--steps", str(shape.steps)]
            completed = subprocess.run(command, capture_output=True, text=True, check=False)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
            if completed.returncode == 0 and lines:
                probe = json.loads(lines[-1])
            else:
                report.notes.append(f"start probe failed: {completed.stderr.strip()[-500:]}")

    _fill_report(
        report, shape, health, ready_age, ours, eager, naive, lora, flops, peak, probe, earlier, args
    )
    return report


def _earlier_figures(path: Path | None, shape: Shape, report: Report) -> dict[str, Any]:
    """Figures of an earlier ``--json`` run of the same shape, for the parts this run skipped."""
    if path is None:
        return {}
    figures: dict[str, Any] = json.loads(path.read_text())
    if figures.get("shape") != shape.label:
        raise SystemExit(f"--compare {path}: it measured {figures.get('shape')!r}, not {shape.label!r}.")
    report.notes.append(f"Figures this run skipped come from {path} ({figures.get('date', 'undated')}).")
    return figures


def _fill_report(
    report: Report,
    shape: Shape,
    health: dict[str, object] | None,
    ready_age: float | None,
    ours: dict[str, float] | None,
    eager: dict[str, float] | None,
    naive: dict[str, float] | None,
    lora: dict[str, Any] | None,
    flops: tuple[float, float] | None,
    peak: float | None,
    probe: dict[str, float] | None,
    earlier: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    """The table: what this run measured, then what it skipped taken from ``earlier`` (marked)."""
    full = shape.full
    add = report.add

    def target(text: str, ok: bool) -> str:
        """A target and whether it is met, shown for the full shape only."""
        return f"{text}: {_verdict(ok)}" if full else ""

    def measured(key: str, here: float | None) -> tuple[float | None, str]:
        """This run's figure, else the earlier run's with a mark on its label."""
        if here is not None:
            return here, ""
        value = earlier.get(key)
        return (float(value), " (earlier run)") if value is not None else (None, "")

    job, mark = measured("ours_job_s", ours["job_seconds"] if ours else None)
    if job is not None:
        goal = f"<= {TARGET_JOB_SECONDS:g} s (goal {GOAL_JOB_SECONDS:g} s)"
        label = "ours: 5-image job, end to end" + mark
        add("ours_job_s", label, job, f"{job:.2f} s", target(goal, job <= TARGET_JOB_SECONDS))
    if ours is not None:
        gpu = ours["gpu_seconds"]
        add("ours_gpu_s", "ours: denoise + decode (GPU part)", gpu, f"{gpu:.2f} s")
        step_ms = ours["denoise_seconds"] / shape.steps * 1000
        label = f"ours: one step (batch of {shape.variations}, CFG)"
        add("ours_step_ms", label, step_ms, f"{step_ms:.1f} ms")
    if job is not None:
        per_hour = 3600 * shape.variations / job
        add("ours_images_per_hour", "ours: images per hour" + mark, per_hour, f"{per_hour:,.0f}")
    seconds, mark = measured("eager_job_s", eager["job_seconds"] if eager else None)
    if seconds is not None:
        add("eager_job_s", "ours without compile: 5-image job" + mark, seconds, f"{seconds:.2f} s")
    naive_seconds, mark = measured("naive_job_s", naive["job_seconds"] if naive else None)
    if naive_seconds is not None:
        label = "naive: plain pipeline x5 (fp16, SDPA)" if full else "naive: plain pipeline x5"
        add("naive_job_s", label + mark, naive_seconds, f"{naive_seconds:.2f} s")
        if job is not None:
            ratio = naive_seconds / job
            ratio_target = target(f">= {TARGET_SPEEDUP:g}x", ratio >= TARGET_SPEEDUP)
            add("speedup", "speed-up, ours vs naive", ratio, f"{ratio:.2f}x", ratio_target)
    if full and job is not None:
        floor = shape.variations * TFLOP_PER_IMAGE / args.peak_tflops
        label = f"compute floor (5 x {TFLOP_PER_IMAGE:.0f} TFLOP at {args.peak_tflops:g} TFLOP/s)"
        add("floor_s", label, floor, f"{floor:.2f} s")
        add("floor_fraction", "fraction of the floor reached", floor / job, f"{floor / job:.0%}")
    unet_tflop, mark = measured("unet_tflop", flops[0] if flops else None)
    controlnet_tflop, _ = measured("controlnet_tflop", flops[1] if flops else None)
    if unet_tflop is not None and controlnet_tflop is not None:
        label = "counted: UNet TFLOP / forward / image" + mark
        add("unet_tflop", label, unet_tflop, f"{unet_tflop:.3g}", "issue: 6.76" if full else "")
        label = "counted: ControlNet TFLOP / forward / image" + mark
        add(
            "controlnet_tflop",
            label,
            controlnet_tflop,
            f"{controlnet_tflop:.3g}",
            "issue: 3.02" if full else "",
        )
    if lora is not None and health is not None:
        _lora_rows(report, lora, bool(health["compile"]["enabled"]), target)  # type: ignore[index]
    if ready_age is not None and health is not None:
        add("process_to_ready_s", "process start to ready (weights built)", ready_age, f"{ready_age:.1f} s")
        started = float(health["start_seconds"])  # type: ignore[arg-type]
        add("engine_start_s", "engine start (assembly, compile, warm-up)", started, f"{started:.1f} s")
    if probe is not None:
        ready = probe["process_to_ready_s"]
        ready_target = target(f"<= {TARGET_READY_SECONDS:g} s", ready <= TARGET_READY_SECONDS)
        label = "fresh process, from disk, warm cache"
        add("fresh_process_to_ready_s", label, ready, f"{ready:.1f} s", ready_target)
    elif ours is not None:
        report.notes.append("Pass --save-dir DIR to also time a fresh process loading the models from disk.")
    if peak is not None:
        add("peak_gpu_gib", "peak GPU memory (our engine)", peak, f"{peak:.1f} GiB")
    if ours is not None:
        report.figures["ours_job_seconds_all"] = ours["job_seconds_all"]
    if not full:
        report.notes.append(
            "Scaled-down run: tiny random models on the CPU. The figures show that everything runs; "
            "they are not comparable with the GPU targets."
        )


def _lora_rows(report: Report, lora: dict[str, Any], compiled: bool, target: Any) -> None:
    add = report.add
    p50, p95 = lora["switch_p50_ms"], lora["switch_p95_ms"]
    label = f"LoRA switch p50 ({lora['mode']}, rank {lora['lora_rank']})"
    add(
        "lora_switch_p50_ms",
        label,
        p50,
        f"{p50:.1f} ms",
        target(f"< {TARGET_SWITCH_MS:g} ms", p50 < TARGET_SWITCH_MS),
    )
    add("lora_switch_p95_ms", "LoRA switch p95", p95, f"{p95:.1f} ms")
    cold = lora["cold_load_ms_median"]
    add("lora_cold_load_ms", f"LoRA first load from disk ({lora['lora_file_mb']} MB)", cold, f"{cold:.0f} ms")
    recompiles = lora["graphs_added"]
    if compiled:
        label = "graphs compiled by LoRA switches"
        add("lora_recompiles", label, recompiles, str(recompiles), target("0", recompiles == 0))
    else:
        add("lora_recompiles", "graphs compiled by LoRA switches", None, "n/a (not compiled)")


def print_report(report: Report, args: argparse.Namespace) -> None:
    if torch.cuda.is_available():
        device = f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    else:
        processor = platform.processor() or platform.machine()
        device = f"CPU {processor}, {os.cpu_count()} cores (torch {torch.__version__})"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nMockup Studio engine benchmark, {now}")
    print(f"device:  {device}")
    print(f"shape:   {report.figures['shape']}")
    print(f"compile: {report.figures['compile']}; medians of {args.repeats} repeats after a warm-up\n")
    if not report.rows:
        report.rows.append(("nothing measured (eager runs only when the engine is compiled)", "", ""))
    width = max(len(label) for label, _, _ in report.rows)
    value_width = max(len(value) for _, value, _ in report.rows)
    print(f"{'metric'.ljust(width)}  {'value'.rjust(value_width)}  target")
    print(f"{'-' * width}  {'-' * value_width}  {'-' * 24}")
    for label, value, target in report.rows:
        print(f"{label.ljust(width)}  {value.rjust(value_width)}  {target}")
    for note in report.notes:
        print(f"\nnote: {note}")
    report.figures["device"] = device
    report.figures["date"] = now


PARTS = ("ours", "eager", "naive")


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"parts are {', '.join(PARTS)}; got {text!r}")
    return parts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gpu_runtime.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="full SDXL shape (the default on CUDA)")
    parser.add_argument("--small", action="store_true", help="the scaled-down shape even on CUDA")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile UNet + ControlNet (default: on CUDA only)",
    )
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    parser.add_argument(
        "--parts",
        type=_parts,
        default=PARTS,
        help="comma-separated, of ours (with LoRA and start figures), eager, naive (default: all)",
    )
    parser.add_argument("--no-eager", action="store_true", help="leave out the uncompiled engine run")
    parser.add_argument("--no-naive", action="store_true", help="leave out the naive pipeline")
    parser.add_argument("--compare", type=Path, help="an earlier run's --json, for the parts this run skips")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps per image (default 30)")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="dense bf16 TFLOP/s of the GPU")
    parser.add_argument("--save-dir", type=Path, help="save the random models here and time a fresh start")
    parser.add_argument("--probe-start", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.parts = tuple(
        part
        for part in args.parts
        if not (part == "eager" and args.no_eager) and not (part == "naive" and args.no_naive)
    )
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")  # random weights make the naive pipeline's casts warn
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    if args.probe_start:
        probe_start(args)
        return
    report = run(args)
    print_report(report, args)
    if args.json:
        args.json.write_text(json.dumps(report.figures, indent=2, default=str))


if __name__ == "__main__":
    main()
