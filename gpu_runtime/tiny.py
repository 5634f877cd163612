"""Tiny random-weight SDXL + ControlNet models, saved in the diffusers folder layout.

They have SDXL's real architecture scaled down (three UNet levels, ``text_time`` added embeddings,
cross-attention over both text encoders concatenated, a ControlNet derived from the UNet, a VAE with
SDXL's 8x scale factor), so the ``tiny`` engine runs the very same loading and generation code as
production: ``from_pretrained`` on a local folder with ``local_files_only=True``. Their backgrounds
are abstract noise; they exist so the whole flow runs and is tested on any machine.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from gpu_runtime.configs import sdxl_scheduler_config

# Bump when the tiny models change: folders built by an older builder are rebuilt.
TINY_BUILDER_VERSION = 1
MARKER_NAME = "tiny-builder.json"
BASE_SUBDIR = "sdxl"
CONTROLNET_SUBDIR = "controlnet"
_SEED = 20240607

TINY_TEXT_HIDDEN = 32
TINY_VOCAB_SIZE = 1000

TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": [16, 32, 32],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    # As in SDXL's config, "attention_head_dim" holds the number of heads per level.
    "attention_head_dim": [1, 2, 2],
    "transformer_layers_per_block": [1, 1, 2],
    "cross_attention_dim": 2 * TINY_TEXT_HIDDEN,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    # 6 size/crop numbers x addition_time_embed_dim + the pooled projection of text encoder 2.
    "projection_class_embeddings_input_dim": 6 * 8 + TINY_TEXT_HIDDEN,
    "norm_num_groups": 8,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [8, 16, 16, 16],  # four levels: the same 8x scale factor as SDXL's VAE
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 128,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}


def _tiny_text_config(*, hidden_act: str) -> dict[str, Any]:
    return {
        "vocab_size": TINY_VOCAB_SIZE,
        "hidden_size": TINY_TEXT_HIDDEN,
        "intermediate_size": 37,
        "num_hidden_layers": 2,  # SDXL reads the penultimate hidden state: at least two layers
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": TINY_TEXT_HIDDEN,
        "hidden_act": hidden_act,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }


def _bytes_to_unicode() -> dict[int, str]:
    """The byte-to-printable-character table of byte-level BPE (GPT-2 / CLIP)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, [chr(c) for c in chars], strict=True))


# A few merges so common prompt words become single tokens, as they would with CLIP's real vocabulary.
_MERGES = [
    ("t", "h"),
    ("th", "e</w>"),
    ("o", "n</w>"),
    ("i", "n</w>"),
    ("a", "n"),
    ("an", "d</w>"),
    ("o", "f</w>"),
]


def _write_tokenizer(folder: Path, *, padding: str) -> None:
    """Writes a CLIP byte-level BPE tokenizer (vocab.json, merges.txt, tokenizer_config.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}
    byte_chars = list(_bytes_to_unicode().values())
    for char in byte_chars:
        vocab[char] = len(vocab)
    for char in byte_chars:
        vocab[char + "</w>"] = len(vocab)
    for left, right in _MERGES:
        vocab.setdefault(left + right, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    assert len(vocab) <= TINY_VOCAB_SIZE
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in _MERGES)
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": padding,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")


def build_clip_tokenizers(folder: Path) -> tuple[Any, Any]:
    """SDXL's two CLIP tokenizers, from a byte-level vocabulary written into ``folder``.

    Every text maps to ids below 520, so they fit the tiny text encoders and the real ones alike
    (prompts are always padded to 77 tokens, so the cost of encoding does not depend on them).
    """
    from transformers import CLIPTokenizer

    _write_tokenizer(folder / "tokenizer", padding="<|endoftext|>")
    _write_tokenizer(folder / "tokenizer_2", padding="!")  # SDXL's second tokenizer pads with "!"
    return (
        CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
        CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True),
    )


def build_tiny_models(folder: Path) -> Path:
    """Builds the tiny models into ``folder`` (``sdxl/`` pipeline + ``controlnet/``) and returns it.

    Deterministic: a fixed seed, so two builds hold the same weights. Not atomic; use
    :func:`ensure_tiny_models` unless you own ``folder``.
    """
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(_SEED)
    unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 16))
    # A trained ControlNet starts from zero convolutions; random ones make the control image really
    # flow into the tiny UNet, so a wiring mistake would show in the output.
    zero_initialised = [
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    ]
    for module in zero_initialised:
        for parameter in module.parameters():
            torch.nn.init.normal_(parameter, std=0.05)
    vae = AutoencoderKL(**TINY_VAE_CONFIG)
    text_encoder = CLIPTextModel(CLIPTextConfig(**_tiny_text_config(hidden_act="quick_gelu")))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_tiny_text_config(hidden_act="gelu")))

    base = folder / BASE_SUBDIR
    token_sources = folder / "_tokenizer_sources"
    tokenizer, tokenizer_2 = build_clip_tokenizers(token_sources)
    scheduler = EulerDiscreteScheduler.from_config(sdxl_scheduler_config())

    pipeline: Any = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipeline.save_pretrained(base, safe_serialization=True)
    controlnet.save_pretrained(folder / CONTROLNET_SUBDIR, safe_serialization=True)
    shutil.rmtree(token_sources)
    marker = {"version": TINY_BUILDER_VERSION, "seed": _SEED}
    (folder / MARKER_NAME).write_text(json.dumps(marker), encoding="utf-8")
    return folder


def _is_current(folder: Path) -> bool:
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("version") == TINY_BUILDER_VERSION


def ensure_tiny_models(folder: Path) -> Path:
    """Returns ``folder`` holding current tiny models, building them once if needed.

    Idempotent and safe against concurrent callers: the models are built in a private temporary
    folder beside ``folder`` and renamed into place, so a reader never sees half a build; a folder
    left by an older builder version is replaced.
    """
    folder = Path(folder)
    if _is_current(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build_tiny_models(staging)
        if folder.exists() and not _is_current(folder):
            stale = folder.parent / f".{folder.name}.stale-{uuid.uuid4().hex[:8]}"
            try:
                folder.rename(stale)
            except FileNotFoundError:  # another process moved it first
                pass
            else:
                shutil.rmtree(stale, ignore_errors=True)
        try:
            staging.rename(folder)
        except OSError:
            # Another process renamed its build into place first; theirs is as good as ours.
            if not _is_current(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def tiny_unet_config() -> dict[str, Any]:
    """A copy of the tiny UNet's config (for building LoRAs that fit it)."""
    return json.loads(json.dumps(TINY_UNET_CONFIG))


def build_tiny_lora(
    path: Path,
    unet_config: dict[str, Any],
    *,
    rank: int = 4,
    seed: int = 0,
    fmt: str = "peft",
    scale: float = 1.0,
    alpha: float | None = None,
) -> Path:
    """Writes a random LoRA for the attention projections of the UNet ``unet_config`` describes.

    ``fmt="peft"`` writes diffusers/PEFT keys (``unet.<module>.lora_A.weight``/``lora_B.weight``),
    with diffusers' ``lora_adapter_metadata`` (r, lora_alpha, target_modules) when ``alpha`` is
    given; ``fmt="kohya"`` writes kohya-ss keys (``lora_unet_<module_with_underscores>.lora_down.weight``,
    ``.lora_up.weight`` and ``.alpha``, ``rank`` unless ``alpha`` is given). ``scale`` multiplies the
    up/B weights. Works for the tiny and the full SDXL UNet.
    """
    from gpu_runtime.lora import attention_projection_modules

    if fmt not in ("peft", "kohya"):
        raise ValueError(f"fmt must be 'peft' or 'kohya', not {fmt!r}")
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, (in_features, out_features) in attention_projection_modules(unet_config).items():
        down = torch.randn(rank, in_features, generator=generator) / in_features**0.5
        up = torch.randn(out_features, rank, generator=generator) * (scale / rank**0.5)
        if fmt == "peft":
            tensors[f"unet.{name}.lora_A.weight"] = down.to(torch.float16)
            tensors[f"unet.{name}.lora_B.weight"] = up.to(torch.float16)
        else:
            kohya = "lora_unet_" + name.replace(".", "_")
            tensors[f"{kohya}.lora_down.weight"] = down.to(torch.float16)
            tensors[f"{kohya}.lora_up.weight"] = up.to(torch.float16)
            tensors[f"{kohya}.alpha"] = torch.tensor(float(alpha or rank), dtype=torch.float16)
    metadata = {"format": "pt"}
    if fmt == "peft" and alpha is not None:
        modules = sorted(attention_projection_modules(unet_config))
        adapter = {"unet.r": rank, "unet.lora_alpha": alpha, "unet.target_modules": modules}
        metadata["lora_adapter_metadata"] = json.dumps(adapter)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path
