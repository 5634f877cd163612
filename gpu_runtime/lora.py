"""LoRA files: validation (header only), a RAM cache keyed by sha256, and switching per batch.

Every LoRA goes through one normalisation: diffusers' own conversion (kohya-ss and diffusers/PEFT
formats, SGM block names) maps its keys to UNet modules, each module's key and shapes are checked
against the UNet, and the module's ``alpha / rank`` scale is folded into its up (B) matrix, padded
to one rank for the whole file. The result is a plain PEFT state dict whose scale is exactly 1.0,
so the per-style weight is the only scale left, and two adapters never disagree on alpha patterns
(which diffusers' hot swap refuses).

The engine applies the UNet part of a LoRA. Text-encoder tensors are accepted, counted in
:class:`LoraInfo` and left out: the text encoders are shared by every batch and the hot-swap slot
lives in the UNet alone.

Two ways to switch, chosen by the engine:

* ``adapters`` (eager UNet): each LoRA is loaded once as a named PEFT adapter
  (``unet.load_lora_adapter``, what ``load_lora_weights`` calls for the UNet) and a batch selects its
  adapters and weights with ``set_adapters``; ``disable_lora`` when the batch has none.
* ``hotswap`` (compiled UNet): ``enable_lora_hotswap(target_rank=max_rank)`` then one zero "slot"
  adapter covering every linear layer of the UNet's transformer blocks is loaded with
  ``load_lora_adapter`` before compiling. A batch's LoRAs (several side by side along the rank,
  weights folded in) are copied into the slot's tensors in place, and "no LoRA" zeroes it. The
  compiled graph never changes, so nothing recompiles.

  The copy is ours rather than ``load_lora_weights(..., hotswap=True)``: that call does the same
  in-place copies but first walks the whole UNet several times (two ``state_dict()`` calls, offload
  hook and merge checks), 125 ms per switch on the tiny UNet on this project's CPU box and growing
  with module count (SDXL's UNet has ~3x the modules once the slot is attached), against a target
  of 100 ms. Copying into the tensors we created is the same operation without the walks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from gpu_runtime.configs import sdxl_unet_config
from gpu_runtime.errors import InvalidLora
from gpu_runtime.types import LoraSpec

DEFAULT_MAX_BYTES = 2 * 1024**3
HOTSWAP_SLOT = "mockup_hotswap_slot"

_HEADER_MAX_BYTES = 100 * 1024**2
_DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
_UNET_PREFIXES = ("unet.", "lora_unet_")
_TEXT_ENCODER_PREFIXES = ("text_encoder.", "text_encoder_2.", "lora_te_", "lora_te1_", "lora_te2_")
_LORA_TENSOR_MARKERS = ("lora_A", "lora_B", "lora.down", "lora.up", "lora_down", "lora_up", ".alpha")
_DORA_MARKERS = ("dora_scale", "lora_magnitude_vector")
_NOT_SAFETENSORS = (
    "This is not a .safetensors file{detail}. Only .safetensors LoRA files are accepted: pickled "
    "checkpoints (.ckpt, .pt, .bin) can run code when they are loaded. Convert the file to "
    ".safetensors (kohya-ss and diffusers both save it) and upload that."
)


@dataclass(frozen=True)
class LoraInfo:
    """What :func:`lora_inspect` learned from a valid LoRA file.

    ``rank`` is the largest rank of its UNet modules; ``n_tensors`` counts every tensor in the file;
    ``text_encoder_tensors`` of them belong to the text encoders and are not applied.
    """

    sha256: str
    rank: int
    size_bytes: int
    n_tensors: int
    format: str  # "diffusers/peft" or "kohya"
    unet_modules: int = 0
    text_encoder_tensors: int = 0


@dataclass(frozen=True)
class _TensorEntry:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Header:
    tensors: dict[str, _TensorEntry]
    metadata: dict[str, str]


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _looks_like(prefix: bytes) -> str:
    if prefix.startswith(b"PK\x03\x04"):
        return ": it is a zip archive, the format of torch.save checkpoints"
    if len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5:
        return ": it is a Python pickle"
    return ""


def _parse_header(prefix: bytes, size: int) -> _Header:
    """Parses and checks a safetensors header; ``prefix`` holds at least the header's bytes."""
    if size < 8 or len(prefix) < 8:
        raise InvalidLora(_NOT_SAFETENSORS.format(detail=" (it is too short)"))
    (header_len,) = struct.unpack("<Q", prefix[:8])
    if header_len < 2 or header_len > min(_HEADER_MAX_BYTES, size - 8):
        raise InvalidLora(_NOT_SAFETENSORS.format(detail=_looks_like(prefix) or " (no valid header)"))
    raw = prefix[8 : 8 + header_len]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidLora(_NOT_SAFETENSORS.format(detail=" (its header is not JSON)")) from None
    if not isinstance(header, dict):
        raise InvalidLora(_NOT_SAFETENSORS.format(detail=" (its header is not a JSON object)"))
    data_size = size - 8 - header_len
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise InvalidLora("The .safetensors header's __metadata__ is not a JSON object.")
    tensors: dict[str, _TensorEntry] = {}
    end_of_data = 0
    for name, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(dim) for dim in entry["shape"])
            begin, end = (int(offset) for offset in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InvalidLora(f"The .safetensors header entry {name!r} is malformed.") from None
        if dtype not in _DTYPE_BYTES:
            raise InvalidLora(
                f"Tensor {name!r} has dtype {dtype}; a LoRA must hold F16, BF16, F32 or F64 tensors."
            )
        expected = math.prod(shape) * _DTYPE_BYTES[dtype]
        if any(dim < 0 for dim in shape) or not 0 <= begin <= end <= data_size or end - begin != expected:
            raise InvalidLora(f"Tensor {name!r} points outside the file: the .safetensors file is truncated.")
        end_of_data = max(end_of_data, end)
        tensors[name] = _TensorEntry(dtype=dtype, shape=shape)
    if end_of_data != data_size:
        raise InvalidLora("The .safetensors file is truncated or has trailing bytes after its tensors.")
    return _Header(tensors=tensors, metadata={str(k): str(v) for k, v in metadata.items()})


def _read_header(path: Path, *, max_bytes: int) -> tuple[_Header, int]:
    """Reads only the header of ``path`` (a few KB), returning it and the file size."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidLora(f"LoRA file not found: {path}") from None
    if not path.is_file():
        raise InvalidLora(f"LoRA path is not a file: {path}")
    if size > max_bytes:
        raise InvalidLora(
            f"The LoRA file is {size / 1024**2:.0f} MiB, above the {max_bytes / 1024**2:.0f} MiB limit; "
            "SDXL LoRAs are usually 10-900 MiB."
        )
    with open(path, "rb") as handle:
        start = handle.read(8)
        if len(start) == 8:
            (header_len,) = struct.unpack("<Q", start)
            if 2 <= header_len <= min(_HEADER_MAX_BYTES, size - 8):
                start += handle.read(header_len)
    return _parse_header(start, size), size


# --- the UNet's modules -------------------------------------------------------------------------


def _config_key(unet_config: Mapping[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in unet_config.items() if not str(k).startswith("_")}, sort_keys=True, default=str
    )


@functools.lru_cache(maxsize=4)
def _module_table(config_key: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Linear and Conv2d modules of the UNet a config describes, built on the meta device (no memory).

    Values: ``("linear", (in, out))`` or ``("conv", (in, out, kh, kw))``.
    """
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads(config_key))
    table: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear):
            table[name] = ("linear", (module.in_features, module.out_features))
        elif isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            table[name] = ("conv", (module.in_channels, module.out_channels, kh, kw))
    return table


def unet_module_table(unet_config: Mapping[str, Any] | None = None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The LoRA-targetable modules of a UNet (SDXL base when ``unet_config`` is None)."""
    return _module_table(_config_key(unet_config if unet_config is not None else sdxl_unet_config()))


def attention_projection_modules(unet_config: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``to_q/to_k/to_v/to_out.0`` of every attention: what most SDXL LoRAs train. name -> (in, out)."""
    suffixes = (".to_q", ".to_k", ".to_v", ".to_out.0")
    return {
        name: (shape[0], shape[1])
        for name, (kind, shape) in unet_module_table(unet_config).items()
        if kind == "linear" and ".attn" in name and name.endswith(suffixes)
    }


def hotswap_target_modules(unet_config: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Every linear layer inside the UNet's transformer blocks (attention, feed-forward, proj_in/out).

    That is what kohya-ss and diffusers LoRA trainers target for SDXL; the hot-swap slot covers all of
    it, so any such LoRA (or a subset) swaps in. Convolution LoRAs (LoCon) need the eager UNet.
    """
    return {
        name: (shape[0], shape[1])
        for name, (kind, shape) in unet_module_table(unet_config).items()
        if kind == "linear" and ".attentions." in name
    }


# --- normalisation ------------------------------------------------------------------------------


@dataclass
class _ModuleLora:
    down: torch.Tensor  # (rank, in[, kh, kw])
    up: torch.Tensor  # (out, rank[, 1, 1])
    scale: float


def _classify(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Splits tensor names into UNet and text-encoder ones; refuses anything else with an example."""
    unet: list[str] = []
    text: list[str] = []
    for name in names:
        if any(marker in name for marker in _DORA_MARKERS):
            raise InvalidLora(
                f"This is a DoRA file (tensor {name!r}); only plain LoRA is supported. Export it as LoRA."
            )
        if not any(marker in name for marker in _LORA_TENSOR_MARKERS):
            raise InvalidLora(
                f"Tensor {name!r} is not a LoRA weight (expected lora_A/lora_B, lora_down/lora_up or "
                "alpha). Is this a full model checkpoint rather than a LoRA?"
            )
        if name.startswith(_UNET_PREFIXES):
            unet.append(name)
        elif name.startswith(_TEXT_ENCODER_PREFIXES):
            text.append(name)
        else:
            raise InvalidLora(
                f"Tensor {name!r} does not address the SDXL UNet or its text encoders: names must start "
                "with 'unet.' / 'lora_unet_' (or 'text_encoder*.' / 'lora_te*_'). Is this a LoRA for "
                "another model (SD 3, Flux...)?"
            )
    if not unet:
        raise InvalidLora("This LoRA has no weights for the SDXL UNet (only text-encoder weights).")
    return unet, text


def _metadata_config(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """The UNet's LoraConfig kwargs diffusers stores in a file's ``lora_adapter_metadata``, if any."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return None
    try:
        packed = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(packed, dict):
        return None
    config = {k.removeprefix("unet."): v for k, v in packed.items() if k.startswith("unet.")}
    return config or None


def _alphas_by_module(alphas: Mapping[str, float]) -> dict[str, float]:
    """Kohya alphas keyed by UNet module.

    diffusers names them after the converted down weight, which for attention projections is still
    in the old processor form (``...attn1.processor.to_q_lora.down.weight.alpha``); the same key
    conversion as the weights' maps them to their module (``...attn1.to_q``).
    """
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft

    by_module: dict[str, float] = {}
    for key, value in alphas.items():
        if not key.startswith("unet."):
            continue
        name = key.removeprefix("unet.").removesuffix(".alpha")
        if "lora" in name:
            (converted,) = convert_unet_state_dict_to_peft({name: None})
            name = converted.partition(".lora_A")[0]
        by_module[name] = float(value)
    return by_module


def _module_scale(
    module: str, rank: int, alphas: Mapping[str, float], config: Mapping[str, Any] | None
) -> float:
    """``alpha / rank`` with diffusers' conventions: kohya alphas, stored config, else 1.0."""
    if module in alphas:
        return alphas[module] / rank
    if config is None:
        return 1.0  # diffusers/PEFT files without alpha: W + B @ A
    from peft.utils.other import get_pattern_key

    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    r = rank_pattern.get(get_pattern_key(list(rank_pattern), module), config.get("r", rank))
    alpha = alpha_pattern.get(get_pattern_key(list(alpha_pattern), module), config.get("lora_alpha", r))
    if config.get("use_rslora"):
        return float(alpha) / math.sqrt(float(r))
    return float(alpha) / float(r)


def _unet_modules(
    tensors: dict[str, torch.Tensor],
    metadata: Mapping[str, str],
    unet_config: Mapping[str, Any],
) -> dict[str, _ModuleLora]:
    """Maps a LoRA's UNet tensors to UNet modules with diffusers' conversion and checks them.

    ``tensors`` may live on the meta device (validation) or the CPU (loading): only names and
    shapes are used for the checks.
    """
    from diffusers.configuration_utils import FrozenDict
    from diffusers.loaders import StableDiffusionXLLoraLoaderMixin
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft

    table = unet_module_table(unet_config)
    try:
        converted, alphas = StableDiffusionXLLoraLoaderMixin.lora_state_dict(
            dict(tensors), unet_config=FrozenDict(unet_config)
        )
    except (ValueError, KeyError, RuntimeError) as error:
        raise InvalidLora(f"This LoRA's keys cannot be mapped to the SDXL UNet: {error}") from None
    converted = {k.removeprefix("unet."): v for k, v in converted.items() if k.startswith("unet.")}
    if converted and not any("lora_A" in key for key in converted):
        converted = convert_unet_state_dict_to_peft(converted)
    alphas = _alphas_by_module(alphas or {})
    config = _metadata_config(metadata)

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in converted.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module, _, rest = key.partition(marker)
                if rest != "weight":
                    raise InvalidLora(f"Tensor {key!r} is not supported (LoRA biases are not).")
                pairs.setdefault(module, {})[part] = value
                break
        else:
            raise InvalidLora(f"Tensor {key!r} is not a LoRA down/up weight of a UNet module.")

    unknown = sorted(module for module in pairs if module not in table)
    if unknown:
        raise InvalidLora(
            f"This LoRA does not fit the SDXL UNet: {len(unknown)} of {len(pairs)} modules do not exist "
            f"in it, e.g. 'unet.{unknown[0]}'. Is it a LoRA for SD 1.5, SD 2, SD 3 or Flux?"
        )
    modules: dict[str, _ModuleLora] = {}
    for module, pair in pairs.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise InvalidLora(f"Module 'unet.{module}' has only one of its two LoRA matrices.")
        down, up = pair["lora_A"], pair["lora_B"]
        kind, shape = table[module]
        rank = down.shape[0]
        if kind == "linear":
            fits = down.shape == (rank, shape[0]) and up.shape == (shape[1], rank)
        else:
            fits = (
                down.dim() == 4
                and tuple(down.shape[1:]) == (shape[0], shape[2], shape[3])
                and tuple(up.shape) == (shape[1], rank, 1, 1)
            )
        if not fits or rank == 0:
            raise InvalidLora(
                f"Module 'unet.{module}' has LoRA shapes {tuple(down.shape)} / {tuple(up.shape)}, which do "
                f"not fit the UNet layer ({kind} {shape}). Is it a LoRA for another base model?"
            )
        modules[module] = _ModuleLora(down=down, up=up, scale=_module_scale(module, rank, alphas, config))
    return modules


def _format_of(names: Sequence[str]) -> str:
    return "kohya" if any(name.startswith(("lora_unet_", "lora_te")) for name in names) else "diffusers/peft"


def _meta_tensors(header: _Header, names: Iterable[str]) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name in names:
        entry = header.tensors[name]
        if name.endswith(".alpha"):
            tensors[name] = torch.tensor(1.0)  # read with .item() by the conversion; value unused here
        else:
            tensors[name] = torch.empty(entry.shape, device="meta")
    return tensors


def lora_inspect(
    path: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    unet_config: Mapping[str, Any] | None = None,
) -> LoraInfo:
    """Validates a LoRA file without loading its tensors and describes it.

    Reads the safetensors header only (8-byte little-endian length + JSON) and streams the file once
    for its sha256. Refuses, with :class:`InvalidLora` and a message for the uploader: anything that
    is not safetensors (pickles, zip checkpoints, renamed files), truncated or malformed files,
    tensors that are not LoRA weights, DoRA, and keys or shapes that do not fit the UNet
    (``unet_config``; SDXL base when None). The Django admin calls this on upload.
    """
    path = Path(path)
    header, size = _read_header(path, max_bytes=max_bytes)
    if not header.tensors:
        raise InvalidLora("The .safetensors file holds no tensors.")
    names = list(header.tensors)
    unet_names, text_names = _classify(names)
    config = dict(unet_config) if unet_config is not None else sdxl_unet_config()
    modules = _unet_modules(_meta_tensors(header, unet_names), header.metadata, config)
    return LoraInfo(
        sha256=file_sha256(path),
        rank=max(module.down.shape[0] for module in modules.values()),
        size_bytes=size,
        n_tensors=len(names),
        format=_format_of(names),
        unet_modules=len(modules),
        text_encoder_tensors=len(text_names),
    )


@dataclass
class LoadedLora:
    """A validated LoRA in RAM: per UNet module, ``down`` and ``up`` with its scale folded into ``up``.

    Every module is padded (with zeros, which changes nothing) to the file's largest rank.
    """

    sha256: str
    path: str
    info: LoraInfo
    rank: int
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]
    nbytes: int

    @property
    def adapter_name(self) -> str:
        return f"lora_{self.sha256[:16]}"

    def peft_state_dict(self, *, weight: float = 1.0) -> dict[str, torch.Tensor]:
        """``unet.<module>.lora_A.weight`` / ``lora_B.weight`` for ``load_lora_adapter`` (scale 1.0)."""
        state: dict[str, torch.Tensor] = {}
        for module, (down, up) in self.modules.items():
            state[f"unet.{module}.lora_A.weight"] = down
            state[f"unet.{module}.lora_B.weight"] = up if weight == 1.0 else up * weight
        return state


def lora_load(
    path: Path,
    *,
    unet_config: Mapping[str, Any],
    dtype: torch.dtype = torch.float32,
    expected_sha256: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
    pin_memory: bool = False,
) -> LoadedLora:
    """Reads, validates and normalises a LoRA file (one read: hash, header and tensors from the bytes).

    Raises :class:`InvalidLora` for every reason :func:`lora_inspect` does, and when
    ``expected_sha256`` is given and the file on disk no longer has that hash.
    """
    from safetensors.torch import load as load_safetensors

    path = Path(path)
    header, size = _read_header(path, max_bytes=max_bytes)
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 and sha256 != expected_sha256.lower():
        raise InvalidLora(
            f"The LoRA file {path} has changed on disk: its sha256 is {sha256[:12]}..., the catalog "
            f"expects {expected_sha256[:12]}.... Upload it again or update the style."
        )
    names = list(header.tensors)
    unet_names, text_names = _classify(names)
    raw = load_safetensors(data)
    del data
    modules = _unet_modules({name: raw[name] for name in unet_names}, header.metadata, unet_config)
    rank = max(module.down.shape[0] for module in modules.values())
    normalised: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    nbytes = 0
    for name, module in modules.items():
        down = module.down.to(torch.float32)
        up = module.up.to(torch.float32) * module.scale
        pad = rank - down.shape[0]
        if pad:
            down = torch.cat([down, down.new_zeros((pad, *down.shape[1:]))], dim=0)
            up = torch.cat([up, up.new_zeros((up.shape[0], pad, *up.shape[2:]))], dim=1)
        down, up = down.to(dtype).contiguous(), up.to(dtype).contiguous()
        if pin_memory:
            down, up = down.pin_memory(), up.pin_memory()
        nbytes += down.nbytes + up.nbytes
        normalised[name] = (down, up)
    info = LoraInfo(
        sha256=sha256,
        rank=rank,
        size_bytes=size,
        n_tensors=len(names),
        format=_format_of(names),
        unet_modules=len(modules),
        text_encoder_tensors=len(text_names),
    )
    return LoadedLora(sha256=sha256, path=str(path), info=info, rank=rank, modules=normalised, nbytes=nbytes)


# --- the manager --------------------------------------------------------------------------------


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class _Switch:
    seconds: float
    cold: bool  # a file had to be read from disk during this switch


@dataclass
class _StatCacheEntry:
    mtime_ns: int
    size: int
    sha256: str


@dataclass
class LoraManager:
    """Keeps LoRAs in RAM (LRU under ``cache_bytes``) and makes a batch's LoRAs active in a pipeline.

    Not thread-safe by itself: the engine calls it under its generate lock.
    """

    unet_config: Mapping[str, Any]
    device: torch.device
    dtype: torch.dtype
    mode: Literal["adapters", "hotswap"] = "adapters"
    max_rank: int = 64
    cache_bytes: int = 2 * 1024**3
    max_file_bytes: int = DEFAULT_MAX_BYTES
    max_resident_adapters: int = 8
    _cache: OrderedDict[str, LoadedLora] = field(default_factory=OrderedDict)
    _stat_cache: dict[str, _StatCacheEntry] = field(default_factory=dict)
    _resident: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _slot: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # module -> (A, B)
    _slot_dirty_rank: int = 0  # B columns past this are known to be zero
    _active: tuple[tuple[str, float], ...] | None = ()  # None: unknown, apply fully next time
    _switches: list[_Switch] = field(default_factory=list)
    _loads: int = 0

    # RAM cache

    def _sha_for(self, spec: LoraSpec) -> str | None:
        """The sha256 to look up: the catalog's, else the file's (re-hashed when its stat changes)."""
        if spec.sha256:
            return spec.sha256.lower()
        try:
            stat = os.stat(spec.path)
        except FileNotFoundError:
            raise InvalidLora(f"LoRA file not found for style LoRA {spec.name!r}: {spec.path}") from None
        known = self._stat_cache.get(spec.path)
        if known and known.mtime_ns == stat.st_mtime_ns and known.size == stat.st_size:
            return known.sha256
        return None

    def get(self, spec: LoraSpec) -> tuple[LoadedLora, bool]:
        """The loaded LoRA for ``spec`` and whether it had to be read from disk.

        A file whose content changed (a new sha256 in the spec, or a changed mtime/size when the
        spec carries no hash) is read again; a stale cache entry is never used for a new hash.
        """
        sha = self._sha_for(spec)
        if sha is not None and sha in self._cache:
            self._cache.move_to_end(sha)
            return self._cache[sha], False
        loaded = lora_load(
            Path(spec.path),
            unet_config=self.unet_config,
            dtype=self.dtype,
            expected_sha256=spec.sha256,
            max_bytes=self.max_file_bytes,
            pin_memory=self.device.type == "cuda",
        )
        self._loads += 1
        if not spec.sha256:
            stat = os.stat(spec.path)
            self._stat_cache[spec.path] = _StatCacheEntry(stat.st_mtime_ns, stat.st_size, loaded.sha256)
        self._cache[loaded.sha256] = loaded
        self._cache.move_to_end(loaded.sha256)
        total = sum(entry.nbytes for entry in self._cache.values())
        while total > self.cache_bytes and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            total -= evicted.nbytes
        return loaded, True

    # activation

    def prepare_hotswap(self, pipe: Any) -> None:
        """Loads the zero slot adapter (hotswap mode). Call once, before compiling the UNet."""
        if self.mode != "hotswap" or self._slot:
            return
        with torch.inference_mode(False), torch.no_grad():
            self._prepare_hotswap(pipe)

    def _prepare_hotswap(self, pipe: Any) -> None:
        targets = hotswap_target_modules(self.unet_config)
        slot: dict[str, torch.Tensor] = {}
        for module, (in_features, out_features) in targets.items():
            slot[f"unet.{module}.lora_A.weight"] = torch.zeros(self.max_rank, in_features, dtype=self.dtype)
            slot[f"unet.{module}.lora_B.weight"] = torch.zeros(out_features, self.max_rank, dtype=self.dtype)
        # diffusers' hot-swap preparation: after this first load it turns the adapter's scalings
        # into tensors (a changed float would recompile) and pads it to ``target_rank``.
        pipe.unet.enable_lora_hotswap(target_rank=self.max_rank)
        pipe.unet.load_lora_adapter(slot, prefix="unet", adapter_name=HOTSWAP_SLOT)
        for name, module in pipe.unet.named_modules():
            lora_a = getattr(module, "lora_A", None)
            if isinstance(lora_a, torch.nn.ModuleDict) and HOTSWAP_SLOT in lora_a:
                down: Any = lora_a[HOTSWAP_SLOT]
                up: Any = module.lora_B[HOTSWAP_SLOT]
                self._slot[name] = (down.weight.data, up.weight.data)
        if self._slot.keys() != targets.keys():
            raise RuntimeError("the hot-swap slot did not attach to every transformer-block linear layer")
        self._active = ()

    def activate(self, pipe: Any, specs: Sequence[LoraSpec]) -> float:
        """Makes exactly ``specs`` (with their weights) active for the next batch; returns seconds.

        A no-op (0.0, not recorded) when the same LoRAs and weights are already active. Safe to call
        inside ``torch.inference_mode()``: adapter weights are always created as ordinary tensors,
        so they can be deleted or swapped later outside it.
        """
        with torch.inference_mode(False), torch.no_grad():
            return self._activate(pipe, specs)

    def _activate(self, pipe: Any, specs: Sequence[LoraSpec]) -> float:
        wanted: dict[str, float] = {}
        loaded: dict[str, LoadedLora] = {}
        started = time.perf_counter()
        cold = False
        for spec in specs:
            lora, was_read = self.get(spec)
            cold = cold or was_read
            loaded[lora.sha256] = lora
            wanted[lora.sha256] = wanted.get(lora.sha256, 0.0) + float(spec.weight)
        key = tuple(sorted(wanted.items()))
        if key == self._active:
            return 0.0
        if self.mode == "hotswap":
            self._activate_hotswap([(loaded[sha], weight) for sha, weight in key])
        else:
            self._activate_adapters(pipe, [(loaded[sha], weight) for sha, weight in key])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        self._active = key
        self._switches.append(_Switch(seconds=seconds, cold=cold))
        return seconds

    def _activate_adapters(self, pipe: Any, loras: list[tuple[LoadedLora, float]]) -> None:
        unet = pipe.unet
        if not loras:
            if self._resident:
                unet.disable_lora()
            return
        for lora, _ in loras:
            name = lora.adapter_name
            if name in self._resident:
                self._resident.move_to_end(name)
                continue
            unet.load_lora_adapter(lora.peft_state_dict(), prefix="unet", adapter_name=name)
            self._resident[name] = None
        needed = {lora.adapter_name for lora, _ in loras}
        for name in list(self._resident):
            if len(self._resident) <= self.max_resident_adapters:
                break
            if name not in needed:
                unet.delete_adapters(name)
                del self._resident[name]
        unet.enable_lora()
        unet.set_adapters([lora.adapter_name for lora, _ in loras], weights=[weight for _, weight in loras])

    def _activate_hotswap(self, loras: list[tuple[LoadedLora, float]]) -> None:
        """Copies ``loras`` into the slot's tensors in place: the compiled graph sees new values only.

        The LoRAs sit side by side along the rank (LoRA i in rows/columns ``offset_i..offset_i+r_i``)
        with their weights folded into B, so the slot computes ``sum_i w_i * B_i @ A_i``; every B
        block a LoRA does not train, and everything past the last LoRA, is zero.
        """
        if not self._slot:
            raise RuntimeError("prepare_hotswap(pipe) must run before the first activation in hotswap mode")
        total_rank = sum(lora.rank for lora, _ in loras)
        if total_rank > self.max_rank:
            raise InvalidLora(
                f"These LoRAs have rank {total_rank} together, above this engine's hot-swap rank "
                f"{self.max_rank}. Raise the engine's LoRA max rank (MOCKUP_LORA_MAX_RANK) or use "
                "fewer / lower-rank LoRAs in one style."
            )
        for lora, _ in loras:
            outside = sorted(lora.modules.keys() - self._slot.keys())
            if outside:
                raise InvalidLora(
                    f"This LoRA trains layers outside the transformer blocks (e.g. 'unet.{outside[0]}'), "
                    "which a compiled engine cannot hot-swap. Run the engine without compile for it."
                )
        offset = 0
        for lora, weight in loras:
            end = offset + lora.rank
            for module, (down_slot, up_slot) in self._slot.items():
                pair = lora.modules.get(module)
                up_block = up_slot[:, offset:end]
                if pair is None:
                    up_block.zero_()
                    continue
                down, up = pair
                down_slot[offset:end].copy_(down, non_blocking=True)
                up_block.copy_(up, non_blocking=True)
                if weight != 1.0:
                    up_block.mul_(weight)
            offset = end
        if self._slot_dirty_rank > offset:
            for _, up_slot in self._slot.values():
                up_slot[:, offset : self._slot_dirty_rank].zero_()
        self._slot_dirty_rank = offset

    def forget_active(self) -> None:
        """Marks the pipeline's LoRA state unknown, so the next :meth:`activate` applies it fully."""
        self._active = None

    def preload(self, pipe: Any, spec: LoraSpec) -> None:
        """Reads ``spec`` into RAM and, in adapters mode, loads it into the UNet (inactive)."""
        with torch.inference_mode(False), torch.no_grad():
            lora, _ = self.get(spec)
            if self.mode == "adapters" and lora.adapter_name not in self._resident:
                pipe.unet.load_lora_adapter(
                    lora.peft_state_dict(), prefix="unet", adapter_name=lora.adapter_name
                )
                self._resident[lora.adapter_name] = None
                self._active = None  # loading made the new adapter active

    def unload(self, pipe: Any, sha256: str) -> bool:
        """Drops a LoRA from RAM and from the UNet; True if it was known."""
        with torch.inference_mode(False), torch.no_grad():
            return self._unload(pipe, sha256.lower())

    def _unload(self, pipe: Any, sha256: str) -> bool:
        known = self._cache.pop(sha256, None) is not None
        name = f"lora_{sha256[:16]}"
        if name in self._resident:
            pipe.unet.delete_adapters(name)
            del self._resident[name]
            known = True
        if self._active is not None and any(sha == sha256 for sha, _ in self._active):
            self._activate(pipe, [])
        for path, entry in list(self._stat_cache.items()):
            if entry.sha256 == sha256:
                del self._stat_cache[path]
        return known

    # reporting

    def stats(self) -> dict[str, Any]:
        """Switch times (all and warm-only p50/p95, in ms), loads from disk, cache contents."""
        all_ms = [switch.seconds * 1000 for switch in self._switches]
        warm_ms = [switch.seconds * 1000 for switch in self._switches if not switch.cold]
        return {
            "mode": self.mode,
            "max_rank": self.max_rank if self.mode == "hotswap" else None,
            "switches": len(all_ms),
            "switch_p50_ms": _percentile(all_ms, 0.5),
            "switch_p95_ms": _percentile(all_ms, 0.95),
            "warm_switch_p50_ms": _percentile(warm_ms, 0.5),
            "warm_switch_p95_ms": _percentile(warm_ms, 0.95),
            "loads_from_disk": self._loads,
            "cached": self.cached(),
            "cache_bytes": sum(entry.nbytes for entry in self._cache.values()),
            "resident_adapters": len(self._resident),
        }

    def cached(self) -> list[dict[str, Any]]:
        """The LoRAs held in RAM, least recently used first."""
        return [
            {"sha256": entry.sha256, "path": entry.path, "rank": entry.rank, "bytes": entry.nbytes}
            for entry in self._cache.values()
        ]

    def reset_stats(self) -> None:
        self._switches.clear()
