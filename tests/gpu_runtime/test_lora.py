"""LoRA files: header-only validation, normalisation, the RAM cache, and switching inside the engine.

LoRAs are made here with random weights for the tiny UNet (and, for key checks, SDXL's real module
names), in both diffusers/PEFT and kohya-ss formats.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from gpu_runtime.engine import Engine, EngineConfig
from gpu_runtime.errors import InvalidLora
from gpu_runtime.lora import LoraManager, file_sha256, lora_inspect, lora_load
from gpu_runtime.tiny import build_tiny_lora, tiny_unet_config
from gpu_runtime.types import GenerateRequest, LoraSpec, VariationResult, VariationSpec


def one_variation(*loras: LoraSpec) -> list[VariationSpec]:
    return [VariationSpec(index=0, seed=5, prompt="a bottle in a garden", steps=3, loras=tuple(loras))]


def spec(path: Path, weight: float = 1.0) -> LoraSpec:
    return LoraSpec(name=path.stem, path=str(path), sha256=file_sha256(path), weight=weight)


def pixels(result: VariationResult) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.data)).convert("RGB"))


# --- validation ---------------------------------------------------------------------------------


def test_inspect_describes_a_diffusers_lora(tiny_lora: Path) -> None:
    info = lora_inspect(tiny_lora, unet_config=tiny_unet_config())

    assert info.format == "diffusers/peft"
    assert info.rank == 4
    assert info.n_tensors == 2 * info.unet_modules > 0
    assert info.size_bytes == tiny_lora.stat().st_size
    assert info.sha256 == hashlib.sha256(tiny_lora.read_bytes()).hexdigest()


def test_inspect_describes_a_kohya_lora(second_lora: Path) -> None:
    info = lora_inspect(second_lora, unet_config=tiny_unet_config())

    assert info.format == "kohya"
    assert info.rank == 4
    assert info.n_tensors == 3 * info.unet_modules  # down, up and alpha per module


def test_a_kohya_lora_with_sdxl_sgm_block_names_fits_the_sdxl_unet(tmp_path: Path) -> None:
    # Kohya-ss names SDXL blocks as the original (SGM) code does: input_blocks_4_1 is diffusers'
    # down_blocks.1.attentions.0 (640 channels), middle_block_1 the mid block (1280 channels).
    tensors = {}
    for name, (width, context) in {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": (640, 640),
        "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k": (1280, 2048),
        "lora_unet_output_blocks_0_1_transformer_blocks_1_ff_net_2": (1280, 5120),
    }.items():
        tensors[f"{name}.lora_down.weight"] = torch.zeros(8, context)
        tensors[f"{name}.lora_up.weight"] = torch.zeros(width, 8)
        tensors[f"{name}.alpha"] = torch.tensor(4.0)
    path = tmp_path / "sgm.safetensors"
    save_file(tensors, str(path))

    info = lora_inspect(path)

    assert (info.format, info.rank, info.unet_modules) == ("kohya", 8, 3)


def test_a_lora_for_the_tiny_unet_does_not_fit_the_sdxl_unet(tiny_lora: Path) -> None:
    with pytest.raises(InvalidLora, match="do not fit the UNet layer"):
        lora_inspect(tiny_lora)


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_a_pickled_checkpoint_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "style.ckpt"
    weights = {"lora_unet_down_blocks_1.lora_down.weight": torch.zeros(4, 4)}
    if kind == "torch.save":
        torch.save(weights, path)
        expected = "zip archive"
    else:
        path.write_bytes(pickle.dumps(weights, protocol=4))
        expected = "Python pickle"

    with pytest.raises(InvalidLora, match="This is not a .safetensors file") as raised:
        lora_inspect(path)
    assert expected in str(raised.value)
    assert "can run code" in str(raised.value)


def test_a_text_file_renamed_to_safetensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "style.safetensors"
    path.write_text("These are my favourite prompts for product photos, one per line.\n" * 4)

    with pytest.raises(InvalidLora, match="This is not a .safetensors file"):
        lora_inspect(path)


def test_a_truncated_safetensors_file_is_refused(tiny_lora: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(tiny_lora.read_bytes()[:-100])

    with pytest.raises(InvalidLora, match="truncated"):
        lora_inspect(path, unet_config=tiny_unet_config())


def test_a_header_that_is_not_json_is_refused(tmp_path: Path) -> None:
    header = b"{not json at all}"
    path = tmp_path / "broken.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)

    with pytest.raises(InvalidLora, match="header is not JSON"):
        lora_inspect(path)


def test_keys_for_another_model_are_refused_with_an_example(tmp_path: Path) -> None:
    path = tmp_path / "flux.safetensors"
    save_file(
        {
            "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 3072),
            "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(3072, 4),
        },
        str(path),
    )

    with pytest.raises(InvalidLora, match="does not address the SDXL UNet") as raised:
        lora_inspect(path)
    assert "transformer.single_transformer_blocks.0.attn.to_q.lora_" in str(raised.value)


def test_an_sd15_lora_is_refused_naming_a_module_the_sdxl_unet_lacks(tmp_path: Path) -> None:
    # SD 1.5 has four down blocks with attention in the first; SDXL has three, the first without.
    path = tmp_path / "sd15.safetensors"
    module = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    save_file(
        {f"{module}.lora_A.weight": torch.zeros(4, 320), f"{module}.lora_B.weight": torch.zeros(320, 4)},
        str(path),
    )

    with pytest.raises(InvalidLora, match="does not fit the SDXL UNet") as raised:
        lora_inspect(path)
    assert module in str(raised.value)


def test_a_full_model_checkpoint_is_not_a_lora(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, str(path))

    with pytest.raises(InvalidLora, match="is not a LoRA weight"):
        lora_inspect(path)


def test_a_dora_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dora.safetensors"
    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file(
        {
            f"{name}.lora_down.weight": torch.zeros(4, 640),
            f"{name}.lora_up.weight": torch.zeros(640, 4),
            f"{name}.dora_scale": torch.ones(1, 640),
        },
        str(path),
    )
    with pytest.raises(InvalidLora, match="DoRA"):
        lora_inspect(path)


def test_a_file_over_the_size_limit_is_refused(tiny_lora: Path) -> None:
    with pytest.raises(InvalidLora, match="above the"):
        lora_inspect(tiny_lora, max_bytes=1024, unet_config=tiny_unet_config())


def test_text_encoder_tensors_are_counted_and_left_out(tmp_path: Path, tiny_lora: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(tiny_lora))
    tensors["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 32)
    tensors["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"] = torch.zeros(32, 4)
    path = tmp_path / "with-te.safetensors"
    save_file(tensors, str(path))

    info = lora_inspect(path, unet_config=tiny_unet_config())
    loaded = lora_load(path, unet_config=tiny_unet_config())

    assert info.text_encoder_tensors == 2
    assert all(key.startswith("unet.") for key in loaded.peft_state_dict())


# --- normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["kohya", "peft"])
def test_a_normalised_lora_changes_the_unet_exactly_as_diffusers_loading_the_file(
    tmp_path: Path, tiny_models_dir: Path, fmt: str
) -> None:
    from diffusers import StableDiffusionXLPipeline

    # alpha != rank: the scale alpha / rank must be folded in exactly as diffusers applies it.
    path = build_tiny_lora(
        tmp_path / f"{fmt}.safetensors", tiny_unet_config(), seed=3, fmt=fmt, rank=4, alpha=2.0
    )
    weight = 0.7
    reference = StableDiffusionXLPipeline.from_pretrained(tiny_models_dir / "sdxl", local_files_only=True)
    reference.load_lora_weights(str(path), adapter_name="file")
    reference.set_adapters(["file"], adapter_weights=[weight])
    ours = StableDiffusionXLPipeline.from_pretrained(tiny_models_dir / "sdxl", local_files_only=True)
    loaded = lora_load(path, unet_config=tiny_unet_config())
    ours.load_lora_weights(loaded.peft_state_dict(weight=weight), adapter_name="normalised")
    plain = StableDiffusionXLPipeline.from_pretrained(tiny_models_dir / "sdxl", local_files_only=True)

    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 16, 16, generator=generator)
    context = torch.randn(2, 77, 64, generator=generator)
    added = {"text_embeds": torch.randn(2, 32, generator=generator), "time_ids": torch.zeros(2, 6)}
    with torch.inference_mode():
        outputs = [
            pipe.unet(sample, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
            for pipe in (reference, ours, plain)
        ]
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    assert not torch.allclose(outputs[0], outputs[2], atol=1e-3)


# --- the RAM cache ------------------------------------------------------------------------------


def manager(**options: object) -> LoraManager:
    return LoraManager(
        unet_config=tiny_unet_config(),
        device=torch.device("cpu"),
        dtype=torch.float32,
        **options,  # type: ignore[arg-type]
    )


def test_a_cached_lora_is_not_read_again_until_its_file_changes(tmp_path: Path) -> None:
    path = build_tiny_lora(tmp_path / "style.safetensors", tiny_unet_config(), seed=1)
    cache = manager()
    unhashed = LoraSpec(name="style", path=str(path), sha256="")

    first, read = cache.get(unhashed)
    assert read
    again, read_again = cache.get(unhashed)
    assert again is first and not read_again

    build_tiny_lora(path, tiny_unet_config(), seed=9)  # the merchant replaced the file
    changed, read_changed = cache.get(unhashed)
    assert read_changed
    assert changed.sha256 == file_sha256(path) != first.sha256


def test_a_file_that_no_longer_matches_the_catalog_hash_is_refused(tmp_path: Path) -> None:
    path = build_tiny_lora(tmp_path / "style.safetensors", tiny_unet_config(), seed=1)
    catalog_hash = file_sha256(path)
    build_tiny_lora(path, tiny_unet_config(), seed=2)

    with pytest.raises(InvalidLora, match="changed on disk"):
        manager().get(LoraSpec(name="style", path=str(path), sha256=catalog_hash))


def test_the_ram_cache_drops_the_least_recently_used_lora_beyond_its_budget(tmp_path: Path) -> None:
    paths = [build_tiny_lora(tmp_path / f"l{i}.safetensors", tiny_unet_config(), seed=i) for i in range(3)]
    one_lora_bytes = lora_load(paths[0], unet_config=tiny_unet_config()).nbytes
    cache = manager(cache_bytes=2 * one_lora_bytes)

    for path in paths:
        cache.get(spec(path))

    cached = [entry["path"] for entry in cache.cached()]
    assert cached == [str(paths[1]), str(paths[2])]


# --- in the engine ------------------------------------------------------------------------------


def test_the_engine_applies_a_lora_switches_it_and_removes_it(
    engine: Engine, product: Image.Image, tiny_lora: Path, second_lora: Path
) -> None:
    base = engine.generate(GenerateRequest(product, one_variation()))[0]
    styled = engine.generate(GenerateRequest(product, one_variation(spec(tiny_lora, 1.0))))[0]
    other = engine.generate(GenerateRequest(product, one_variation(spec(second_lora, 1.0))))[0]
    both = engine.generate(
        GenerateRequest(product, one_variation(spec(tiny_lora, 1.0), spec(second_lora, 0.5)))
    )[0]
    muted = engine.generate(GenerateRequest(product, one_variation(spec(tiny_lora, 0.0))))[0]
    off = engine.generate(GenerateRequest(product, one_variation()))[0]

    assert len({base.data, styled.data, other.data, both.data}) == 4
    assert muted.data != styled.data
    assert off.data == base.data
    assert styled.fidelity_max_delta == 0
    stats = engine.loras.stats()
    assert stats["mode"] == "adapters"
    assert stats["switches"] >= 5 and stats["switch_p50_ms"] > 0

    assert engine.loras.unload(engine.pipeline, file_sha256(tiny_lora))
    assert engine.loras.unload(engine.pipeline, file_sha256(second_lora))
    assert engine.loras.cached() == []
    assert engine.generate(GenerateRequest(product, one_variation()))[0].data == base.data


def test_preloading_a_pickle_is_refused_and_the_engine_keeps_working(
    engine: Engine, product: Image.Image, tmp_path: Path
) -> None:
    path = tmp_path / "style.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(InvalidLora, match="not a .safetensors"):
        engine.lora_preload(LoraSpec(name="bad", path=str(path), sha256=""))
    with pytest.raises(InvalidLora):
        engine.generate(
            GenerateRequest(product, one_variation(LoraSpec(name="bad", path=str(path), sha256="")))
        )

    assert engine.generate(GenerateRequest(product, one_variation()))[0].fidelity_max_delta == 0


@pytest.fixture(scope="module")
def hotswap_engine(tiny_models_dir: Path) -> Iterator[Engine]:
    """The tiny engine with the compiled engine's LoRA path (a hot-swap slot), left uncompiled."""
    config = EngineConfig(
        kind="tiny", tiny_dir=tiny_models_dir, lora_hotswap=True, lora_max_rank=8, warmup=False
    )
    started = Engine.start(config)
    yield started
    started.close()


def test_the_hot_swap_slot_switches_loras_in_place_and_comes_back_to_the_base_image(
    hotswap_engine: Engine, engine: Engine, product: Image.Image, tiny_lora: Path, second_lora: Path
) -> None:
    generate = hotswap_engine.generate
    base = generate(GenerateRequest(product, one_variation()))[0]
    styled = generate(GenerateRequest(product, one_variation(spec(tiny_lora, 1.0))))[0]
    other = generate(GenerateRequest(product, one_variation(spec(second_lora, 1.0))))[0]
    both = generate(GenerateRequest(product, one_variation(spec(tiny_lora, 1.0), spec(second_lora, 0.5))))[0]
    off = generate(GenerateRequest(product, one_variation()))[0]

    assert len({base.data, styled.data, other.data, both.data}) == 4
    assert off.data == base.data
    # The slot holds the same update an adapter would: the image matches the eager engine's.
    eager = engine.generate(GenerateRequest(product, one_variation(spec(tiny_lora, 1.0))))[0]
    assert np.abs(pixels(eager).astype(int) - pixels(styled).astype(int)).max() <= 2
    stats = hotswap_engine.loras.stats()
    assert stats["mode"] == "hotswap" and stats["max_rank"] == 8


def test_the_hot_swap_slot_refuses_loras_above_its_rank(
    hotswap_engine: Engine, product: Image.Image, tmp_path: Path
) -> None:
    big = build_tiny_lora(tmp_path / "rank16.safetensors", tiny_unet_config(), rank=16)
    with pytest.raises(InvalidLora, match="above this engine's hot-swap rank 8"):
        hotswap_engine.generate(GenerateRequest(product, one_variation(spec(big))))

    assert hotswap_engine.generate(GenerateRequest(product, one_variation()))[0].fidelity_max_delta == 0
