"""The tiny engine end to end: batching, seeds, pixel-exact products, studio backdrops, cancel, bounds.

Every test runs the real diffusers pipeline on tiny random-weight models loaded from a folder with
``from_pretrained``, exactly as production loads SDXL. Few denoising steps keep the suite fast.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_runtime import engine as engine_module
from gpu_runtime.compose import PRESETS, place_product, preset_get, render_product_layer
from gpu_runtime.engine import SCHEDULERS, Engine, EngineConfig, SdxlComponents, get_engine
from gpu_runtime.errors import BadRequest, EngineError, GenerationCanceled, ModelMissing
from gpu_runtime.tiny import MARKER_NAME, ensure_tiny_models
from gpu_runtime.types import Event, GenerateRequest, StepEvent, VariationResult, VariationSpec

STEPS = 3


def variations(count: int = 5, *, steps: int = STEPS) -> list[VariationSpec]:
    return [
        VariationSpec(index=i, seed=1000 + i, prompt=f"product on a marble table, scene {i}", steps=steps)
        for i in range(count)
    ]


def with_(specs: list[VariationSpec], **changes: object) -> list[VariationSpec]:
    return [replace(spec, **changes) for spec in specs]  # type: ignore[arg-type]


def decode(result: VariationResult) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.data)).convert("RGB"))


def placed_layer(product: Image.Image, preset_name: str) -> np.ndarray:
    """The product as compose places it at the preset's output size: what must come out exactly."""
    preset = preset_get(preset_name)
    placement = place_product(product, canvas=preset.size, fill=preset.product_fill, anchor=preset.anchor)
    return np.asarray(render_product_layer(product, placement))


def test_five_variations_run_as_one_batch_with_a_step_event_per_step(
    engine: Engine, product: Image.Image
) -> None:
    events: list[Event] = []
    results = engine.generate(GenerateRequest(product, variations(5)), on_event=events.append)

    steps = [event for event in events if isinstance(event, StepEvent)]
    assert [event.step for event in steps] == [1, 2, 3]
    assert {event.indices for event in steps} == {(0, 1, 2, 3, 4)}  # one pipeline call for all five
    assert all(event.steps == STEPS for event in steps)
    finished = [event for event in events if isinstance(event, VariationResult)]
    assert sorted(event.index for event in finished) == [0, 1, 2, 3, 4]
    assert events.index(finished[0]) > events.index(steps[-1])
    assert [result.index for result in results] == [0, 1, 2, 3, 4]
    for result in results:
        assert (result.width, result.height, result.fmt, result.backdrop) == (1024, 1024, "png", "generated")
        assert result.fidelity_max_delta == 0
        assert result.gpu_seconds > 0
        assert decode(result).shape == (1024, 1024, 3)
    assert len({result.data for result in results}) == 5  # five seeds, five different backgrounds


def test_the_same_request_gives_byte_identical_images_and_a_new_seed_another(
    engine: Engine, product: Image.Image
) -> None:
    request = GenerateRequest(product, variations(2))
    first = engine.generate(request)
    again = engine.generate(GenerateRequest(product, variations(2)))
    reseeded = engine.generate(GenerateRequest(product, with_(variations(2), seed=77)))

    assert [result.data for result in first] == [result.data for result in again]
    assert first[0].data != reseeded[0].data
    assert first[1].data != reseeded[1].data


def test_variations_that_differ_in_steps_or_preset_run_as_separate_batches(
    engine: Engine, product: Image.Image
) -> None:
    specs = variations(4)
    specs[2] = replace(specs[2], steps=2)
    specs[3] = replace(specs[3], output_preset="portrait_4_5")
    events: list[Event] = []
    results = engine.generate(GenerateRequest(product, specs), on_event=events.append)

    batches: dict[tuple[int, ...], list[int]] = {}
    for event in events:
        if isinstance(event, StepEvent):
            batches.setdefault(event.indices, []).append(event.step)
    assert batches == {(0, 1): [1, 2, 3], (2,): [1, 2], (3,): [1, 2, 3]}
    assert (results[3].width, results[3].height) == (1080, 1350)


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_every_output_preset_reproduces_the_opaque_product_pixels_exactly(
    engine: Engine, product: Image.Image, fmt: Literal["png", "webp"]
) -> None:
    specs = [
        replace(spec, output_preset=name, output_format=fmt, steps=2)
        for spec, name in zip(variations(len(PRESETS)), sorted(PRESETS), strict=True)
    ]
    results = engine.generate(GenerateRequest(product, specs))

    for spec, result in zip(specs, results, strict=True):
        assert result.fidelity_max_delta == 0
        layer = placed_layer(product, spec.output_preset)
        opaque = layer[..., 3] == 255
        assert opaque.sum() > 1000
        assert np.array_equal(decode(result)[opaque], layer[..., :3][opaque])


def test_studio_backdrops_run_no_diffusion_and_the_marketplace_preset_is_pure_white(
    engine: Engine, product: Image.Image
) -> None:
    specs = [
        VariationSpec(index=0, seed=1, prompt="", backdrop="studio", studio_fill="white", shadow="none"),
        VariationSpec(
            index=1,
            seed=2,
            prompt="",
            backdrop="studio",
            studio_fill="gradient",
            studio_colors=("#f4efe6", "#d9cfc0"),
        ),
        VariationSpec(
            index=2,
            seed=3,
            prompt="",
            backdrop="studio",
            studio_fill="solid",
            studio_colors=("#223344", "#000"),
        ),
        # A generated backdrop on a pure-white marketplace preset would be thrown away: no diffusion.
        VariationSpec(index=3, seed=4, prompt="beach", output_preset="marketplace_2000", shadow="none"),
    ]
    events: list[Event] = []
    results = engine.generate(GenerateRequest(product, specs), on_event=events.append)

    assert not [event for event in events if isinstance(event, StepEvent)]
    assert all(result.backdrop == "studio" and result.gpu_seconds == 0 for result in results)
    assert all(result.fidelity_max_delta == 0 for result in results)
    for result, preset in ((results[0], "square_1024"), (results[3], "marketplace_2000")):
        pixels = decode(result)
        outside = placed_layer(product, preset)[..., 3] == 0
        assert (pixels[outside] == 255).all()
    assert tuple(decode(results[2])[0, 0]) == (0x22, 0x33, 0x44)
    assert (results[3].width, results[3].height) == (2000, 2000)


def test_canceling_after_step_two_stops_the_batch_and_the_engine_keeps_working(
    engine: Engine, product: Image.Image
) -> None:
    reference = engine.generate(GenerateRequest(product, variations(2, steps=4)))
    events: list[Event] = []

    def after_step_two() -> bool:
        return any(isinstance(event, StepEvent) and event.step >= 2 for event in events)

    with pytest.raises(GenerationCanceled):
        engine.generate(
            GenerateRequest(product, variations(2, steps=4)),
            on_event=events.append,
            should_cancel=after_step_two,
        )

    assert [event.step for event in events if isinstance(event, StepEvent)] == [1, 2]
    assert not [event for event in events if isinstance(event, VariationResult)]
    again = engine.generate(GenerateRequest(product, variations(2, steps=4)))
    assert [result.data for result in again] == [result.data for result in reference]


def test_a_cancel_before_the_first_batch_runs_no_step(engine: Engine, product: Image.Image) -> None:
    events: list[Event] = []
    with pytest.raises(GenerationCanceled):
        engine.generate(
            GenerateRequest(product, variations(1)), on_event=events.append, should_cancel=lambda: True
        )
    assert events == []


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_generates_a_pixel_exact_mockup(
    engine: Engine, product: Image.Image, scheduler: str
) -> None:
    results = engine.generate(GenerateRequest(product, with_(variations(1), scheduler=scheduler)))
    assert results[0].fidelity_max_delta == 0


def test_a_size_override_sets_the_generation_size(engine: Engine, product: Image.Image) -> None:
    results = engine.generate(GenerateRequest(product, variations(1), size=(96, 64)))
    assert (results[0].width, results[0].height) == (1024, 1024)  # the output keeps the preset's size
    assert results[0].fidelity_max_delta == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": (100, 128)}, "multiple of 8"),
        ({"size": (32, 128)}, "64..1536"),
        ({"size": (2048, 1024)}, "64..1536"),
        ({"steps": 0}, "steps"),
        ({"steps": 200}, "steps"),
        ({"guidance": -1.0}, "guidance"),
        ({"controlnet_scale": 3.0}, "controlnet_scale"),
        ({"scheduler": "heun_pp"}, "unknown scheduler"),
        ({"output_preset": "square_9000"}, "Unknown output preset"),
        ({"output_format": "gif"}, "output_format"),
        ({"seed": -1}, "seed"),
        ({"variations": 9}, "1..8 variations"),
        ({"variations": "duplicate"}, "unique"),
        ({"product": "rgb"}, "RGBA"),
        ({"product": "empty"}, "empty"),
        ({"studio_colors": ("red", "#fff")}, "hex colour"),
    ],
)
def test_out_of_range_parameters_are_bad_requests(
    engine: Engine, product: Image.Image, change: dict[str, object], message: str
) -> None:
    specs = variations(2)
    size = None
    if "size" in change:
        size = change["size"]
    elif change.get("variations") == 9:
        specs = variations(9)
    elif change.get("variations") == "duplicate":
        specs = with_(specs, index=0)
    elif change.get("product") == "rgb":
        product = product.convert("RGB")
    elif change.get("product") == "empty":
        product = Image.new("RGBA", (64, 64), (10, 20, 30, 0))
    elif "studio_colors" in change:
        specs = with_(specs, backdrop="studio", studio_colors=change["studio_colors"])
    else:
        specs = with_(specs, **change)

    with pytest.raises(BadRequest, match=message) as raised:
        engine.generate(GenerateRequest(product, specs, size=size))  # type: ignore[arg-type]
    assert isinstance(raised.value, ValueError)


def test_health_reports_device_resident_models_warmth_and_start_time(engine: Engine) -> None:
    health = engine.health()

    assert health["kind"] == "tiny"
    assert health["warm"] is True
    assert health["device"] == "cpu"
    assert health["dtype"] == "float32"
    assert float(health["start_seconds"]) > 0  # type: ignore[arg-type]
    names = [model["name"] for model in health["models"]]  # type: ignore[attr-defined]
    assert names == ["unet", "controlnet", "vae", "text_encoder", "text_encoder_2"]
    assert health["last_error"] is None
    json.dumps(health)  # the health endpoint serves it as JSON


def test_a_missing_model_folder_is_a_clear_error_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelMissing, match="does not exist") as raised:
        Engine.start(
            EngineConfig(kind="sdxl", base_model=str(missing), controlnet=str(missing), warmup=False)
        )
    assert str(missing) in str(raised.value)
    assert "never downloads" in str(raised.value)


def test_an_incomplete_model_folder_is_a_clear_error_at_start(tmp_path: Path, tiny_models_dir: Path) -> None:
    empty = tmp_path / "half-copied"
    empty.mkdir()
    config = EngineConfig(
        kind="sdxl", base_model=str(empty), controlnet=str(tiny_models_dir / "controlnet"), warmup=False
    )
    with pytest.raises(ModelMissing, match="SDXL base model") as raised:
        Engine.start(config)
    assert str(empty) in str(raised.value)


def test_a_hub_id_not_in_the_local_cache_is_a_clear_error_at_start(tiny_models_dir: Path) -> None:
    config = EngineConfig(
        kind="sdxl",
        base_model=str(tiny_models_dir / "sdxl"),
        controlnet="mockup-studio-tests/controlnet-that-was-never-downloaded",
        warmup=False,
    )
    with pytest.raises(ModelMissing, match="not in the local cache") as raised:
        Engine.start(config)
    assert "mockup-studio-tests/controlnet-that-was-never-downloaded" in str(raised.value)


def test_an_sdxl_engine_with_no_model_configured_says_so() -> None:
    with pytest.raises(ModelMissing, match="No SDXL base model is configured"):
        Engine.start(EngineConfig(kind="sdxl", warmup=False))


def test_the_sdxl_loading_code_loads_a_local_diffusers_folder(
    tiny_models_dir: Path, product: Image.Image
) -> None:
    config = EngineConfig(
        kind="sdxl",
        base_model=str(tiny_models_dir / "sdxl"),
        controlnet=str(tiny_models_dir / "controlnet"),
        generation_scale=0.125,
        warmup=False,
    )
    started = Engine.start(config)
    try:
        assert started.health()["warm"] is False
        results = started.generate(GenerateRequest(product, variations(1)))
        assert results[0].fidelity_max_delta == 0
    finally:
        started.close()


def test_an_engine_over_models_built_in_memory_generates_like_a_loaded_one(
    engine: Engine, tiny_models_dir: Path, product: Image.Image
) -> None:
    from diffusers import ControlNetModel, StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline.from_pretrained(tiny_models_dir / "sdxl", local_files_only=True)
    components = SdxlComponents(
        unet=base.unet,
        controlnet=ControlNetModel.from_pretrained(tiny_models_dir / "controlnet", local_files_only=True),
        vae=base.vae,
        text_encoder=base.text_encoder,
        text_encoder_2=base.text_encoder_2,
        tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer_2,
        scheduler=base.scheduler,
    )
    built = Engine.from_components(EngineConfig(kind="tiny", warmup=False), components)
    try:
        request = GenerateRequest(product, variations(2))
        assert [r.data for r in built.generate(request)] == [r.data for r in engine.generate(request)]
    finally:
        built.close()


def test_tiny_models_are_built_once_and_rebuilt_when_the_builder_changes(tmp_path: Path) -> None:
    folder = ensure_tiny_models(tmp_path / "tiny")
    marker = folder / MARKER_NAME
    first_build = marker.stat().st_mtime_ns
    assert ensure_tiny_models(folder) == folder
    assert marker.stat().st_mtime_ns == first_build
    assert (folder / "sdxl" / "model_index.json").is_file()
    assert (folder / "controlnet" / "config.json").is_file()
    assert not [entry for entry in os.listdir(tmp_path) if entry.startswith(".")]  # no staging left behind

    marker.write_text(json.dumps({"version": -1}))
    ensure_tiny_models(folder)
    assert json.loads(marker.read_text())["version"] != -1


def test_get_engine_starts_one_engine_per_process(
    monkeypatch: pytest.MonkeyPatch, tiny_models_dir: Path
) -> None:
    monkeypatch.setattr(engine_module, "_engine", None)
    config = EngineConfig(kind="tiny", tiny_dir=tiny_models_dir, warmup=False)
    first = get_engine(config)
    try:
        assert get_engine(config) is first
        with pytest.raises(EngineError, match="one engine per process"):
            get_engine(replace(config, compile=True))
    finally:
        first.close()


def test_an_empty_negative_prompt_gets_the_zero_embedding_whatever_its_neighbours_ask(
    engine: Engine,
) -> None:
    specs = [
        VariationSpec(index=0, seed=1, prompt="a bottle", negative_prompt=""),
        VariationSpec(index=1, seed=2, prompt="a bottle", negative_prompt="blurry, text"),
    ]
    with_negative = engine._encode_prompts(specs)
    alone = engine._encode_prompts(specs[:1])

    assert not with_negative[1][0].any() and not with_negative[3][0].any()
    assert with_negative[1][1].abs().sum() > 0
    assert np.allclose(with_negative[0][0].numpy(), alone[0][0].numpy(), atol=1e-6)


@pytest.mark.parametrize(("force_upcast", "decoded_in"), [(True, torch.float32), (False, torch.float16)])
def test_an_fp16_vae_that_asks_for_upcasting_decodes_in_fp32_and_goes_back_to_fp16(
    engine: Engine, force_upcast: bool, decoded_in: torch.dtype
) -> None:
    vae = engine.pipeline.vae
    seen: list[torch.dtype] = []
    hook = vae.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    vae.to(dtype=torch.float16)
    vae.register_to_config(force_upcast=force_upcast)
    try:
        latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode(), engine._vae_for_decoding():
            image = engine._decode(latents)
        after = vae.dtype
    finally:
        hook.remove()
        vae.to(dtype=torch.float32)
        vae.register_to_config(force_upcast=False)

    assert seen == [decoded_in]
    assert after == torch.float16
    assert image.size == (128, 128)
