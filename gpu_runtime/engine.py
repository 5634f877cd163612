"""The resident engine: SDXL + ControlNet loaded once per process, warm, generating backgrounds.

One :class:`Engine` per process (:func:`get_engine`). :meth:`Engine.start` loads SDXL base and an
SDXL ControlNet from local folders or the local Hugging Face cache (never downloading), places them
on the device in the working dtype, optionally compiles UNet and ControlNet, and warms up by running
one small job through :meth:`Engine.generate` itself, so the first real job is as fast as any other.

A job's generated variations are grouped into batches (same LoRAs and weights, steps, scheduler,
guidance, ControlNet scale, preset); each batch is ONE call of diffusers'
``StableDiffusionXLControlNetInpaintPipeline`` with a prompt, negative prompt and seeded generator
per variation. The plain 4-channel SDXL UNet inpaints by blending the kept product region back into
the latents at every step; the product is then pasted back pixel-exact by ``compose.finish``.
Studio backdrops (and pure-white marketplace presets) need no diffusion at all.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw

from gpu_runtime.compose import (
    FinishedImage,
    GenerationInputs,
    OutputPreset,
    finish,
    generation_inputs,
    generation_size_for,
    parse_hex_colour,
    preset_get,
    studio_backdrop,
)
from gpu_runtime.control import canny_control_image
from gpu_runtime.errors import BadRequest, EngineError, GenerationCanceled, InvalidLora, ModelMissing
from gpu_runtime.lora import LoraManager
from gpu_runtime.tiny import BASE_SUBDIR, CONTROLNET_SUBDIR, ensure_tiny_models
from gpu_runtime.types import (
    Event,
    GenerateRequest,
    LoraSpec,
    StepEvent,
    VariationResult,
    VariationSpec,
)

logger = logging.getLogger(__name__)

SCHEDULERS = ("euler_a", "euler", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MAX_VARIATIONS = 8
SIZE_RANGE = (64, 1536)
STEPS_RANGE = (1, 100)
GUIDANCE_RANGE = (0.0, 30.0)
CONTROLNET_SCALE_RANGE = (0.0, 2.0)
LORA_WEIGHT_RANGE = (-2.0, 2.0)
TINY_GENERATION_SCALE = 0.125
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

EventCallback = Callable[[Event], None]
CancelCheck = Callable[[], bool]


def default_tiny_dir() -> Path:
    """Where the tiny models live unless configured: ``$XDG_CACHE_HOME/mockup-studio/tiny-models``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mockup-studio" / "tiny-models"


@dataclass(frozen=True)
class EngineConfig:
    """How to start the engine. ``kind="tiny"`` runs random-weight tiny models (any machine).

    ``base_model`` / ``controlnet``: a local folder in the diffusers layout, or a Hugging Face hub id
    that must already be in the local cache (loaded with ``local_files_only=True``). ``dtype="auto"``
    is bf16 on CUDA and fp32 on CPU. ``compile`` compiles UNet and ControlNet with ``compile_mode``
    and switches LoRAs by hot swap (``lora_hotswap=None`` follows ``compile``). ``generation_scale``
    multiplies the presets' generation sizes (None: 0.125 for tiny, 1.0 for sdxl).
    """

    kind: Literal["tiny", "sdxl"] = "tiny"
    base_model: str = ""
    controlnet: str = ""
    tiny_dir: Path | None = None
    dtype: str = "auto"
    device: str = "auto"
    compile: bool = False
    warmup: bool = True
    compile_mode: str = "max-autotune-no-cudagraphs"
    variant: str = ""
    generation_scale: float | None = None
    lora_max_rank: int = 64
    lora_hotswap: bool | None = None
    lora_cache_bytes: int = 2 * 1024**3
    lora_max_file_bytes: int = 2 * 1024**3
    finish_workers: int = 0  # threads that composite and encode; 0 = min(8, CPU count)
    # torch's intra-op threads when running on the CPU (process-wide): 0 = 1 for the tiny engine,
    # whose operations are too small to share (on a busy 2-core box a tiny UNet call took 785 ms with
    # two threads waiting on each other, 16 ms with one), else torch's default.
    cpu_threads: int = 0


@dataclass
class SdxlComponents:
    """Already-built models for :meth:`Engine.from_components` (the benchmark's random weights)."""

    unet: Any
    controlnet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any
    scheduler: Any

    def sdxl_parts(self) -> dict[str, Any]:
        """What every diffusers SDXL pipeline takes, ControlNet aside, as keyword arguments."""
        return {
            "vae": self.vae,
            "text_encoder": self.text_encoder,
            "text_encoder_2": self.text_encoder_2,
            "tokenizer": self.tokenizer,
            "tokenizer_2": self.tokenizer_2,
            "unet": self.unet,
            "scheduler": self.scheduler,
        }


# --- loading ------------------------------------------------------------------------------------


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"Device {name!r} was asked for but CUDA is not available on this machine.")
    return device


def _resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in _DTYPES:
        raise EngineError(f"Unknown dtype {name!r}; use auto, fp16, bf16 or fp32.")
    dtype = _DTYPES[name]
    if device.type == "cpu" and dtype != torch.float32:
        raise EngineError(f"dtype {name} needs CUDA; on CPU the engine runs in fp32.")
    return dtype


def _source(value: str, what: str) -> str:
    """A model source as ``from_pretrained`` takes it; ModelMissing when it cannot be local."""
    hint = (
        f"Provide {what} as a local folder in the diffusers layout, or download the hub id once with "
        "`hf download <id>` on this machine; the engine never downloads at request time."
    )
    if not value:
        raise ModelMissing(f"No {what} is configured. {hint} Or run the 'tiny' engine.")
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelMissing(f"The {what} path {path} is a file, not a model folder. {hint}")
        return str(path)
    if value.startswith(("/", ".", "~")) or not _HUB_ID.match(value):
        raise ModelMissing(f"The {what} folder {path} does not exist. {hint}")
    return value


@contextmanager
def _model_missing_on_failure(what: str, source: str) -> Iterator[None]:
    try:
        yield
    except (OSError, ValueError) as error:
        where = "folder" if Path(source).expanduser().exists() else "hub id (not in the local cache)"
        raise ModelMissing(
            f"Could not load the {what} from {where} {source!r}: {error}. The engine only loads local "
            "files: put a complete diffusers-layout folder there, or download the hub id once with "
            "`hf download <id>`."
        ) from error


def load_pipeline(base_model: str, controlnet: str, *, dtype: torch.dtype, variant: str = "") -> Any:
    """Loads SDXL base + ControlNet into an inpainting pipeline, on the CPU, from local files only.

    The same code loads production weights and the tiny models (both are diffusers folders).
    Raises :class:`ModelMissing` naming the source when anything is missing or incomplete.
    """
    from diffusers import ControlNetModel, StableDiffusionXLControlNetInpaintPipeline

    base_source = _source(base_model, "SDXL base model")
    controlnet_source = _source(controlnet, "ControlNet")
    common: dict[str, Any] = {
        "torch_dtype": dtype,
        "local_files_only": True,
        "use_safetensors": True,
        "variant": variant or None,
    }
    with _model_missing_on_failure("ControlNet", controlnet_source):
        controlnet_model = ControlNetModel.from_pretrained(controlnet_source, **common)
    with _model_missing_on_failure("SDXL base model", base_source):
        return StableDiffusionXLControlNetInpaintPipeline.from_pretrained(
            base_source, controlnet=controlnet_model, add_watermarker=False, **common
        )


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler of kind ``name`` from the model's scheduler config (betas, spacing)."""
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(base_config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(base_config)
    if name in ("dpmpp_2m", "dpmpp_2m_karras"):
        return DPMSolverMultistepScheduler.from_config(
            base_config,
            algorithm_type="dpmsolver++",
            solver_order=2,
            use_karras_sigmas=name == "dpmpp_2m_karras",
        )
    if name == "ddim":
        return DDIMScheduler.from_config(base_config)
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(base_config)
    raise BadRequest(f"Unknown scheduler {name!r}; use one of: {', '.join(SCHEDULERS)}.")


# --- request checks and batching ----------------------------------------------------------------


def _check_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not (isinstance(value, int | float) and not isinstance(value, bool)) or not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}, got {value!r}.")


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """A generation size: two ints in 64..1536, each a multiple of 8; BadRequest otherwise."""
    try:
        width, height = size
    except (TypeError, ValueError):
        raise BadRequest(f"size must be (width, height), got {size!r}.") from None
    low, high = SIZE_RANGE
    for side_name, side in (("width", width), ("height", height)):
        if not isinstance(side, int) or isinstance(side, bool) or not low <= side <= high:
            raise BadRequest(f"Generation {side_name} must be a whole number in {low}..{high}, got {side!r}.")
        if side % 8:
            raise BadRequest(f"Generation {side_name} must be a multiple of 8, got {side}.")
    return (width, height)


def _check_variation(variation: VariationSpec) -> OutputPreset:
    where = f"Variation {variation.index}"
    if not isinstance(variation.seed, int) or not 0 <= variation.seed < 2**63:
        raise BadRequest(f"{where}: seed must be a whole number in 0..2^63-1, got {variation.seed!r}.")
    if not isinstance(variation.steps, int) or not STEPS_RANGE[0] <= variation.steps <= STEPS_RANGE[1]:
        raise BadRequest(
            f"{where}: steps must be a whole number in {STEPS_RANGE[0]}..{STEPS_RANGE[1]}, "
            f"got {variation.steps!r}."
        )
    _check_range(f"{where}: guidance", variation.guidance, GUIDANCE_RANGE)
    _check_range(f"{where}: controlnet_scale", variation.controlnet_scale, CONTROLNET_SCALE_RANGE)
    if variation.scheduler not in SCHEDULERS:
        raise BadRequest(
            f"{where}: unknown scheduler {variation.scheduler!r}; use one of: {', '.join(SCHEDULERS)}."
        )
    if variation.output_format not in OUTPUT_FORMATS:
        raise BadRequest(
            f"{where}: output_format must be png, jpeg or webp, got {variation.output_format!r}."
        )
    if variation.backdrop not in ("generated", "studio"):
        raise BadRequest(f"{where}: backdrop must be 'generated' or 'studio', got {variation.backdrop!r}.")
    if variation.shadow not in ("none", "soft"):
        raise BadRequest(f"{where}: shadow must be 'none' or 'soft', got {variation.shadow!r}.")
    if variation.studio_fill not in ("white", "solid", "gradient"):
        raise BadRequest(
            f"{where}: studio_fill must be white, solid or gradient, got {variation.studio_fill!r}."
        )
    try:
        preset = preset_get(variation.output_preset)
        if variation.backdrop == "studio":
            for colour in variation.studio_colors:
                parse_hex_colour(colour)
    except ValueError as error:
        raise BadRequest(f"{where}: {error}") from None
    for lora in variation.loras:
        _check_range(f"{where}: LoRA {lora.name!r} weight", lora.weight, LORA_WEIGHT_RANGE)
    return preset


def check_request(request: GenerateRequest) -> dict[int, OutputPreset]:
    """Checks every parameter before any work; returns each variation's preset. BadRequest if not."""
    image = request.product_rgba
    if not isinstance(image, Image.Image) or image.mode != "RGBA":
        raise BadRequest("product_rgba must be an RGBA image: the original photo with the cutout as alpha.")
    if not image.getchannel("A").getextrema()[1]:
        raise BadRequest("The product cutout is empty (alpha is 0 everywhere): there is no product to place.")
    variations = request.variations
    if not 1 <= len(variations) <= MAX_VARIATIONS:
        raise BadRequest(f"A job has 1..{MAX_VARIATIONS} variations, got {len(variations)}.")
    indices = [variation.index for variation in variations]
    if len(set(indices)) != len(indices):
        raise BadRequest(f"Variation indices must be unique, got {indices}.")
    if request.size is not None:
        check_size(request.size)
    return {variation.index: _check_variation(variation) for variation in variations}


def _batch_key(variation: VariationSpec, size: tuple[int, int]) -> tuple[Any, ...]:
    loras = tuple(sorted((lora.path, lora.sha256.lower(), float(lora.weight)) for lora in variation.loras))
    return (
        loras,
        variation.steps,
        variation.scheduler,
        float(variation.guidance),
        float(variation.controlnet_scale),
        variation.output_preset,
        size,
    )


@dataclass
class _Batch:
    preset: OutputPreset
    size: tuple[int, int]
    variations: list[VariationSpec] = field(default_factory=list)

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(variation.index for variation in self.variations)


# --- the engine ---------------------------------------------------------------------------------


def _warmup_product() -> Image.Image:
    """A synthetic product (a rounded box with a label) to warm the real code path with."""
    image = Image.new("RGBA", (320, 400), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((40, 30, 280, 380), radius=36, fill=(46, 110, 180, 255))
    draw.rectangle((80, 160, 240, 240), fill=(240, 236, 220, 255))
    return image


class Engine:
    """SDXL + ControlNet resident on one device. Build with :meth:`start` (or :func:`get_engine`)."""

    def __init__(self, config: EngineConfig, pipe: Any, *, device: torch.device, dtype: torch.dtype) -> None:
        self.config = config
        self.requested_config = config
        self._pipe = pipe
        self._device = device
        self._dtype = dtype
        self._lock = threading.Lock()
        self._warm = False
        self._compiled = False
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._start_seconds = 0.0
        self._warmup_seconds = 0.0
        self._jobs = 0
        self._images = 0
        self._base_scheduler_config = pipe.scheduler.config
        scale = config.generation_scale
        self._generation_scale = (
            scale if scale is not None else (TINY_GENERATION_SCALE if config.kind == "tiny" else 1.0)
        )
        hotswap = config.lora_hotswap if config.lora_hotswap is not None else config.compile
        self._loras = LoraManager(
            unet_config=dict(pipe.unet.config),
            device=device,
            dtype=dtype,
            mode="hotswap" if hotswap else "adapters",
            max_rank=config.lora_max_rank,
            cache_bytes=config.lora_cache_bytes,
            max_file_bytes=config.lora_max_file_bytes,
        )
        workers = config.finish_workers or min(8, os.cpu_count() or 1)
        self._finisher = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mockup-finish")

    # construction

    @classmethod
    def start(cls, config: EngineConfig) -> Engine:
        """Loads the models, prepares them on the device, warms up; ModelMissing if any is absent.

        ``kind="tiny"`` builds the tiny models into ``tiny_dir`` first if they are not there.
        """
        started = time.perf_counter()
        requested = config
        device = _resolve_device(config.device)
        dtype = _resolve_dtype(config.dtype, device)
        if config.kind == "tiny":
            folder = ensure_tiny_models(config.tiny_dir or default_tiny_dir())
            config = replace(
                config,
                tiny_dir=folder,
                base_model=str(folder / BASE_SUBDIR),
                controlnet=str(folder / CONTROLNET_SUBDIR),
            )
        elif config.kind != "sdxl":
            raise EngineError(f"Unknown engine kind {config.kind!r}; use 'tiny' or 'sdxl'.")
        pipe = load_pipeline(config.base_model, config.controlnet, dtype=dtype, variant=config.variant)
        engine = cls._ready(config, pipe, device=device, dtype=dtype, started=started)
        engine.requested_config = requested
        return engine

    @classmethod
    def from_components(cls, config: EngineConfig, components: SdxlComponents) -> Engine:
        """An engine over models already built in memory (the benchmark's random full-size models).

        Everything after loading (device, dtypes, LoRA slot, compile, warm-up) is the code
        :meth:`start` runs.
        """
        from diffusers import StableDiffusionXLControlNetInpaintPipeline

        started = time.perf_counter()
        device = _resolve_device(config.device)
        dtype = _resolve_dtype(config.dtype, device)
        pipe = StableDiffusionXLControlNetInpaintPipeline(
            **components.sdxl_parts(),
            controlnet=components.controlnet,
            requires_aesthetics_score=False,
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
        return cls._ready(config, pipe, device=device, dtype=dtype, started=started)

    @classmethod
    def _ready(
        cls, config: EngineConfig, pipe: Any, *, device: torch.device, dtype: torch.dtype, started: float
    ) -> Engine:
        pipe.set_progress_bar_config(disable=True)
        if device.type == "cpu":
            threads = config.cpu_threads or (1 if config.kind == "tiny" else 0)
            if threads:
                torch.set_num_threads(threads)
        for name in ("unet", "controlnet", "vae", "text_encoder", "text_encoder_2"):
            module = getattr(pipe, name)
            module.requires_grad_(False)
            module.eval()
            if module.dtype != dtype:  # from_pretrained already loaded in ``dtype``; built models may not be
                module.to(dtype=dtype)
        pipe.to(device)
        if dtype != torch.float16:
            # The published SDXL VAE asks to be upcast because it overflows fp16; bf16 has fp32's
            # exponent range and fp32 is fp32, so the pipeline's upcast round trips would be waste.
            pipe.vae.register_to_config(force_upcast=False)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True  # fixed shapes per preset: pick the fastest conv once
            for name in ("unet", "controlnet", "vae"):
                getattr(pipe, name).to(memory_format=torch.channels_last)
        engine = cls(config, pipe, device=device, dtype=dtype)
        engine._loras.prepare_hotswap(pipe)  # before compiling: the slot is part of the graph
        if config.compile:
            engine._compile()
        if config.warmup:
            engine.warm_up()
        engine._start_seconds = time.perf_counter() - started
        return engine

    def _compile(self) -> None:
        if self._device.type == "cuda":
            import torch._inductor.config as inductor_config

            # The settings diffusers documents for SDXL on Hopper/Ampere: 1x1 convs as matmuls, and
            # coordinate-descent tuning of the generated kernels.
            inductor_config.conv_1x1_as_mm = True
            inductor_config.coordinate_descent_tuning = True
            inductor_config.coordinate_descent_check_all_directions = True
            inductor_config.epilogue_fusion = False
        for name in ("unet", "controlnet"):
            getattr(self._pipe, name).compile(mode=self.config.compile_mode, fullgraph=False, dynamic=False)
        self._compiled = True

    def warm_up(self) -> None:
        """Runs one small job (five variations, two steps, default preset) through :meth:`generate`.

        Covers every first-call cost on the real path: kernels, cuDNN algorithm choice, compilation
        of the default batch shape, the Canny import, the finishing thread pool.
        """
        started = time.perf_counter()
        variations = [
            VariationSpec(index=i, seed=i, prompt="a product on a table, studio light", steps=2)
            for i in range(5)
        ]
        self.generate(GenerateRequest(product_rgba=_warmup_product(), variations=variations))
        self._jobs = 0
        self._images = 0
        self._warm = True
        self._warmup_seconds = time.perf_counter() - started

    def close(self) -> None:
        """Stops the finishing threads; the engine cannot generate afterwards."""
        self._finisher.shutdown(wait=True)

    # properties and reports

    @property
    def loras(self) -> LoraManager:
        return self._loras

    @property
    def pipeline(self) -> Any:
        """The diffusers pipeline (for the benchmark and tests; do not change it while generating)."""
        return self._pipe

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def lora_preload(self, spec: LoraSpec) -> None:
        """Reads, validates and caches a LoRA ahead of its first job (InvalidLora if it is refused)."""
        with self._lock, torch.no_grad():
            self._loras.preload(self._pipe, spec)

    def lora_switch(self, specs: Sequence[LoraSpec]) -> float:
        """Makes ``specs`` the active LoRAs now, as the next batch would; returns the seconds it took."""
        with self._lock:
            return self._loras.activate(self._pipe, specs)

    def health(self) -> dict[str, object]:
        """A JSON-friendly snapshot: device, memory, resident models, warm, LoRAs, last error."""
        models = []
        for name in ("unet", "controlnet", "vae", "text_encoder", "text_encoder_2"):
            module = getattr(self._pipe, name)
            models.append(
                {
                    "name": name,
                    "class": type(module).__name__,
                    "dtype": str(module.dtype).removeprefix("torch."),
                    "parameters": sum(parameter.numel() for parameter in module.parameters()),
                }
            )
        memory: dict[str, int] | None = None
        if self._device.type == "cuda":
            index = self._device.index if self._device.index is not None else torch.cuda.current_device()
            memory = {
                "allocated_bytes": torch.cuda.memory_allocated(index),
                "peak_allocated_bytes": torch.cuda.max_memory_allocated(index),
                "reserved_bytes": torch.cuda.memory_reserved(index),
                "total_bytes": torch.cuda.get_device_properties(index).total_memory,
            }
            device_name = torch.cuda.get_device_name(index)
        else:
            device_name = platform.processor() or platform.machine() or "CPU"
        compile_info: dict[str, object] = {"enabled": self._compiled}
        if self._compiled:
            compile_info["mode"] = self.config.compile_mode
            compile_info["graphs"] = compiled_graph_count()
        return {
            "kind": self.config.kind,
            "ready": True,
            "warm": self._warm,
            "device": str(self._device),
            "device_name": device_name,
            "dtype": str(self._dtype).removeprefix("torch."),
            "memory": memory,
            "models": models,
            "base_model": self.config.base_model,
            "controlnet": self.config.controlnet,
            "compile": compile_info,
            "loras": self._loras.stats(),
            "last_error": self._last_error,
            "last_error_at": self._last_error_at,
            "start_seconds": round(self._start_seconds, 3),
            "warmup_seconds": round(self._warmup_seconds, 3),
            "jobs": self._jobs,
            "images": self._images,
        }

    # generation

    def generate(
        self,
        request: GenerateRequest,
        *,
        on_event: EventCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> list[VariationResult]:
        """Generates, composites and encodes every variation; returns them sorted by index.

        Studio variations first (no diffusion), then one pipeline call per batch of generated
        variations that share LoRAs, steps, scheduler, guidance, ControlNet scale and preset. Emits a
        :class:`StepEvent` per denoising step of each batch and a :class:`VariationResult` as each
        variation is finished. ``should_cancel`` is checked between steps and between batches:
        :class:`GenerationCanceled` then, and the engine stays usable. BadRequest before any work
        for out-of-range parameters. One generate at a time per engine (a lock).
        """
        presets = check_request(request)
        emit = on_event or (lambda event: None)
        cancel = should_cancel or (lambda: False)
        with self._lock:
            try:
                with torch.inference_mode():
                    results = self._generate(request, presets, emit, cancel)
            except (GenerationCanceled, BadRequest, InvalidLora):
                raise  # the job's own problem, not the engine's health
            except Exception as error:
                self._last_error = f"{type(error).__name__}: {error}"
                self._last_error_at = time.time()
                raise
        self._jobs += 1
        self._images += len(results)
        return sorted(results, key=lambda result: result.index)

    def _generate(
        self,
        request: GenerateRequest,
        presets: dict[int, OutputPreset],
        emit: EventCallback,
        cancel: CancelCheck,
    ) -> list[VariationResult]:
        results: list[VariationResult] = []
        batches: dict[tuple[Any, ...], _Batch] = {}
        for variation in request.variations:
            preset = presets[variation.index]
            if variation.backdrop == "studio" or preset.pure_white:
                if cancel():
                    raise GenerationCanceled("The job was canceled.")
                result = self._finish_studio(request, variation, preset)
                results.append(result)
                emit(result)
                continue
            size = request.size or generation_size_for(preset, scale=self._generation_scale)
            batch = batches.setdefault(_batch_key(variation, size), _Batch(preset=preset, size=size))
            batch.variations.append(variation)
        inputs_cache: dict[tuple[str, tuple[int, int]], tuple[GenerationInputs, Image.Image]] = {}
        for batch in batches.values():
            if cancel():
                raise GenerationCanceled("The job was canceled.")
            cache_key = (batch.preset.name, batch.size)
            if cache_key not in inputs_cache:
                inputs = generation_inputs(request.product_rgba, batch.preset, batch.size)
                inputs_cache[cache_key] = (inputs, canny_control_image(inputs.product_layer))
            inputs, control = inputs_cache[cache_key]
            results.extend(self._run_batch(request, batch, inputs, control, emit, cancel))
        return results

    def _finish_studio(
        self, request: GenerateRequest, variation: VariationSpec, preset: OutputPreset
    ) -> VariationResult:
        fill = "white" if preset.pure_white else variation.studio_fill
        background = studio_backdrop(preset.size, fill=fill, colors=variation.studio_colors)
        finished = finish(
            background,
            request.product_rgba,
            preset,
            shadow=variation.shadow,
            fmt=variation.output_format,
            generated=False,
        )
        return _result(variation, finished, gpu_seconds=0.0, backdrop="studio")

    def _encode_prompts(
        self, variations: Sequence[VariationSpec]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompt and negative embeddings per variation.

        An empty negative prompt gets SDXL's zero embedding (what the pipeline does for a whole
        batch without negatives), whatever the other variations of the batch ask for, so a
        variation's image never depends on its neighbours.
        """
        pipe = self._pipe
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=[variation.prompt for variation in variations],
            device=self._device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
        negative = torch.zeros_like(embeds)
        negative_pooled = torch.zeros_like(pooled)
        with_negative = [i for i, variation in enumerate(variations) if variation.negative_prompt]
        if with_negative:
            encoded, _, encoded_pooled, _ = pipe.encode_prompt(
                prompt=[variations[i].negative_prompt for i in with_negative],
                device=self._device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
            negative[with_negative] = encoded
            negative_pooled[with_negative] = encoded_pooled
        return embeds, negative, pooled, negative_pooled

    def _run_batch(
        self,
        request: GenerateRequest,
        batch: _Batch,
        inputs: GenerationInputs,
        control: Image.Image,
        emit: EventCallback,
        cancel: CancelCheck,
    ) -> list[VariationResult]:
        pipe = self._pipe
        first = batch.variations[0]
        started = time.perf_counter()
        self._loras.activate(pipe, first.loras)
        pipe.scheduler = make_scheduler(first.scheduler, self._base_scheduler_config)
        generators = [
            torch.Generator(device=self._device).manual_seed(variation.seed) for variation in batch.variations
        ]
        embeds, negative, pooled, negative_pooled = self._encode_prompts(batch.variations)
        indices = batch.indices
        canceled = False

        def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal canceled
            emit(StepEvent(indices=indices, step=step + 1, steps=first.steps))
            if cancel():
                canceled = True
                pipeline._interrupt = True  # the pipeline skips the remaining steps
            return tensors

        width, height = batch.size
        output = pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=negative,
            pooled_prompt_embeds=pooled,
            negative_pooled_prompt_embeds=negative_pooled,
            image=inputs.init_image,
            mask_image=inputs.inpaint_mask,
            control_image=control,
            width=width,
            height=height,
            strength=1.0,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance,
            controlnet_conditioning_scale=first.controlnet_scale,
            generator=generators,
            output_type="latent",
            callback_on_step_end=on_step_end,
        )
        if canceled:
            raise GenerationCanceled("The job was canceled between two denoising steps.")
        latents = output.images
        finishing: list[Future[FinishedImage]] = []
        with self._vae_for_decoding():
            for i, variation in enumerate(batch.variations):
                background = self._decode(latents[i : i + 1])
                # Compositing and encoding run on the CPU while the GPU decodes the next image.
                finishing.append(
                    self._finisher.submit(
                        finish,
                        background,
                        request.product_rgba,
                        batch.preset,
                        shadow=variation.shadow,
                        fmt=variation.output_format,
                        generated=True,
                    )
                )
        gpu_seconds = (time.perf_counter() - started) / len(batch.variations)
        results = []
        for variation, future in zip(batch.variations, finishing, strict=True):
            result = _result(variation, future.result(), gpu_seconds=gpu_seconds, backdrop="generated")
            results.append(result)
            emit(result)
        return results

    @contextmanager
    def _vae_for_decoding(self) -> Iterator[None]:
        """The VAE in a dtype it decodes safely in, for the duration of a batch's decodes.

        The published SDXL VAE overflows in fp16 (its config says ``force_upcast``): an fp16
        engine decodes in fp32, as diffusers' own pipeline does, and puts the VAE back in fp16 for
        the next job's mask encoding. bf16 and fp32 decode as they are.
        """
        vae = self._pipe.vae
        upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
        if upcast:
            vae.to(dtype=torch.float32)
        try:
            yield
        finally:
            if upcast:
                vae.to(dtype=torch.float16)

    def _decode(self, latents: torch.Tensor) -> Image.Image:
        """One latent to an RGB image with the VAE, in whatever dtype the VAE holds now."""
        vae = self._pipe.vae
        latents = latents.to(dtype=vae.dtype)
        config = vae.config
        latents_mean = getattr(config, "latents_mean", None)
        latents_std = getattr(config, "latents_std", None)
        if latents_mean is not None and latents_std is not None:
            mean = torch.tensor(latents_mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
            std = torch.tensor(latents_std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        decoded = vae.decode(latents, return_dict=False)[0]
        # Random-weight models can produce non-finite values; an image must still come out.
        pixels = torch.nan_to_num(decoded.float(), nan=0.0, posinf=1.0, neginf=-1.0)
        pixels = ((pixels / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        array = pixels[0].permute(1, 2, 0).contiguous().cpu().numpy()
        return Image.fromarray(np.ascontiguousarray(array))


def _result(
    variation: VariationSpec, finished: FinishedImage, *, gpu_seconds: float, backdrop: str
) -> VariationResult:
    return VariationResult(
        index=variation.index,
        seed=variation.seed,
        data=finished.data,
        fmt=finished.fmt,
        width=finished.width,
        height=finished.height,
        fidelity_max_delta=finished.fidelity_max_delta,
        gpu_seconds=gpu_seconds,
        backdrop=backdrop,
    )


def compiled_graph_count() -> int:
    """Graphs torch.compile has produced in this process (a rising count after warm-up = recompiles)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return 0
    return int(counters["stats"]["unique_graphs"])


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine(config: EngineConfig) -> Engine:
    """The process's one engine, started on the first call; EngineError if asked for another config."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = Engine.start(config)
        elif _engine.requested_config != config:
            raise EngineError(
                "This process already runs an engine with another configuration "
                f"({_engine.config.kind}, {_engine.config.base_model}); there is one engine per process."
            )
        return _engine
