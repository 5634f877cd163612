"""Uploading LoRA files in the admin: what is accepted, what is refused and why, and replacing a file."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from safetensors.torch import save_file

from mockups.catalog.models import Lora
from mockups.catalog.services import lora_create, lora_replace_file
from mockups.errors import ValidationFailed
from mockups.fleet.models import GpuWorker
from tests.admin.conftest import sha256_of, tiny_lora_file
from tests.factories import make_style

pytestmark = pytest.mark.django_db

ADD_URL = "admin:catalog_lora_add"


def upload(path_or_bytes: Path | bytes, name: str) -> SimpleUploadedFile:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def post_lora(client, file: SimpleUploadedFile, *, name: str = "Film grain", weight: str = "0.75"):
    return client.post(
        reverse(ADD_URL),
        {
            "name": name,
            "upload": file,
            "trigger_words": "filmgrain style",
            "preferred_weight": weight,
            "licence_note": "Trained in-house, CC-BY 4.0",
        },
    )


def form_errors(response) -> str:
    assert response.status_code == 200, "the form was expected back with errors"
    form = response.context["adminform"].form
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


def test_it_accepts_a_tiny_lora_and_records_its_rank_hash_and_size(admin_client, tiny_lora_dir):
    path = tiny_lora_file(tiny_lora_dir, seed=1, rank=8)
    response = post_lora(admin_client, upload(path, "film-grain.safetensors"))
    assert response.status_code == 302, form_errors(response)

    lora = Lora.objects.get(name="Film grain")
    assert lora.rank == 8
    assert lora.sha256 == sha256_of(path)
    assert lora.size_bytes == path.stat().st_size
    assert lora.trigger_words == "filmgrain style" and lora.preferred_weight == 0.75
    assert lora.licence_note == "Trained in-house, CC-BY 4.0"
    # Stored under a generated name, never the uploaded one, with the very bytes uploaded.
    assert lora.file.name.startswith("loras/") and "film-grain" not in lora.file.name
    with default_storage.open(lora.file.name, "rb") as handle:
        assert handle.read() == path.read_bytes()


def test_it_accepts_a_lora_in_kohya_format_too(admin_client, tiny_lora_dir):
    from gpu_runtime.tiny import build_tiny_lora, tiny_unet_config

    path = build_tiny_lora(tiny_lora_dir / "kohya.safetensors", tiny_unet_config(), rank=2, fmt="kohya")
    response = post_lora(admin_client, upload(path, "kohya.safetensors"), name="Kohya")
    assert response.status_code == 302, form_errors(response)
    assert Lora.objects.get(name="Kohya").rank == 2


def test_it_refuses_a_pickled_checkpoint_by_its_name(admin_client):
    data = pickle.dumps({"state_dict": {"weight": [0.1, 0.2]}})
    response = post_lora(admin_client, upload(data, "style.ckpt"))
    errors = form_errors(response)
    assert "pickled checkpoint" in errors and "can run code" in errors and ".safetensors" in errors
    assert not Lora.objects.exists()


def test_it_refuses_a_pickle_renamed_to_safetensors(admin_client):
    data = pickle.dumps({"weight": list(range(100))}, protocol=4)
    response = post_lora(admin_client, upload(data, "innocent.safetensors"))
    errors = form_errors(response)
    assert "not a .safetensors file" in errors and "Python pickle" in errors
    assert not Lora.objects.exists()


def test_it_refuses_a_torch_checkpoint_renamed_to_safetensors(admin_client):
    buffer = io.BytesIO()
    torch.save({"unet.weight": torch.zeros(4)}, buffer)
    response = post_lora(admin_client, upload(buffer.getvalue(), "model.safetensors"))
    errors = form_errors(response)
    assert "not a .safetensors file" in errors and "zip archive" in errors


def test_it_refuses_a_renamed_text_file(admin_client):
    text = b"These are my notes about a LoRA I would like to train one day.\n" * 20
    response = post_lora(admin_client, upload(text, "notes.safetensors"))
    errors = form_errors(response)
    assert "not a .safetensors file" in errors
    assert not Lora.objects.exists()


def test_it_refuses_a_safetensors_file_with_unrelated_keys(admin_client, tmp_path):
    path = tmp_path / "classifier.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(8, 8), "head.bias": torch.zeros(8)}, str(path))
    response = post_lora(admin_client, upload(path, "classifier.safetensors"))
    errors = form_errors(response)
    assert "is not a LoRA weight" in errors and "encoder.layer.0.weight" in errors
    assert not Lora.objects.exists()


def test_it_refuses_lora_keys_that_address_modules_the_unet_does_not_have(admin_client, tmp_path):
    path = tmp_path / "sd15.safetensors"
    save_file(
        {
            "unet.down_blocks.9.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 32),
            "unet.down_blocks.9.attentions.0.proj_in.lora_B.weight": torch.zeros(32, 4),
        },
        str(path),
    )
    response = post_lora(admin_client, upload(path, "sd15.safetensors"))
    errors = form_errors(response)
    assert "does not fit the SDXL UNet" in errors and "tiny demo engine" in errors


def test_it_checks_keys_against_the_full_sdxl_unet_when_the_site_runs_sdxl(
    admin_client, settings, tiny_lora_dir
):
    settings.MOCKUP_ENGINE = "sdxl"
    path = tiny_lora_file(tiny_lora_dir, seed=2)  # made for the tiny UNet: its shapes do not fit SDXL
    response = post_lora(admin_client, upload(path, "tiny.safetensors"))
    errors = form_errors(response)
    assert "does not fit" in errors or "do not exist" in errors or "shapes" in errors
    assert "tiny demo engine" not in errors


def test_it_refuses_a_file_above_the_size_limit_before_reading_it(admin_client, settings, tiny_lora_dir):
    path = tiny_lora_file(tiny_lora_dir, seed=1)
    settings.LORA_MAX_BYTES = path.stat().st_size - 1
    response = post_lora(admin_client, upload(path, "big.safetensors"))
    assert "above the" in form_errors(response) and "limit" in form_errors(response)


def test_it_refuses_a_truncated_safetensors_file(admin_client, tiny_lora_dir):
    data = tiny_lora_file(tiny_lora_dir, seed=1).read_bytes()
    response = post_lora(admin_client, upload(data[: len(data) // 2], "cut.safetensors"))
    assert "truncated" in form_errors(response)


def test_a_safetensors_header_is_parsed_without_loading_tensors(tmp_path):
    # A header that promises 1 TiB of tensors in a file of a few bytes: refused from the header alone.
    header = json.dumps(
        {"unet.a.lora_A.weight": {"dtype": "F32", "shape": [2**20, 2**18], "data_offsets": [0, 2**40]}}
    ).encode()
    with pytest.raises(ValidationFailed, match="truncated"):
        lora_create(
            name="huge", upload=ContentFile(struct.pack("<Q", len(header)) + header, name="huge.safetensors")
        )


def test_replacing_the_file_updates_hash_rank_and_time_and_removes_the_old_file(
    admin_client, tiny_lora_dir, django_capture_on_commit_callbacks
):
    first, second = tiny_lora_file(tiny_lora_dir, seed=1), tiny_lora_file(tiny_lora_dir, seed=3, rank=2)
    with first.open("rb") as handle:
        lora = lora_create(name="Grain", upload=ContentFile(handle.read(), name="grain.safetensors"))
    old_name, old_updated = lora.file.name, lora.updated_at

    with django_capture_on_commit_callbacks(execute=True):  # the old file goes once the change commits
        response = admin_client.post(
            reverse("admin:catalog_lora_change", args=[lora.pk]),
            {
                "name": "Grain",
                "upload": upload(second, "grain-v2.safetensors"),
                "trigger_words": "",
                "preferred_weight": "0.8",
                "licence_note": "",
            },
        )
    assert response.status_code == 302, form_errors(response)
    lora.refresh_from_db()
    assert lora.sha256 == sha256_of(second) and lora.rank == 2
    assert lora.updated_at > old_updated
    assert lora.file.name != old_name and not default_storage.exists(old_name)


def test_changing_a_lora_without_a_new_file_keeps_the_file(admin_client, tiny_lora_dir):
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(name="Grain", upload=ContentFile(handle.read(), name="grain.safetensors"))
    before = (lora.file.name, lora.sha256)
    response = admin_client.post(
        reverse("admin:catalog_lora_change", args=[lora.pk]),
        {"name": "Grain", "trigger_words": "grainy", "preferred_weight": "0.6", "licence_note": ""},
    )
    assert response.status_code == 302, form_errors(response)
    lora.refresh_from_db()
    assert (lora.file.name, lora.sha256) == before and lora.trigger_words == "grainy"


def test_a_failed_replacement_leaves_the_lora_as_it_was(tiny_lora_dir):
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(name="Grain", upload=ContentFile(handle.read(), name="grain.safetensors"))
    before = (lora.file.name, lora.sha256, lora.rank)
    with pytest.raises(ValidationFailed):
        lora_replace_file(lora=lora, upload=ContentFile(b"not a lora", name="x.safetensors"))
    lora.refresh_from_db()
    assert (lora.file.name, lora.sha256, lora.rank) == before
    assert default_storage.exists(lora.file.name)


def test_the_list_shows_which_styles_use_a_lora_and_which_workers_hold_it(admin_client, tiny_lora_dir):
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        used = lora_create(name="Used", upload=ContentFile(handle.read(), name="a.safetensors"))
    with tiny_lora_file(tiny_lora_dir, seed=2).open("rb") as handle:
        unused = lora_create(name="Unused", upload=ContentFile(handle.read(), name="b.safetensors"))
    make_style(name="Foggy harbour", loras=[(used, 0.6)])
    old = make_style(name="Old look", loras=[(unused, 0.5)])
    from mockups.catalog.services import style_version_create

    style_version_create(style=old, loras=[])  # its current version no longer uses the LoRA
    GpuWorker.objects.create(
        name="gpu-a:7", hostname="gpu-a", pid=7, loras=[{"sha256": used.sha256, "name": "Used"}]
    )

    response = admin_client.get(reverse("admin:catalog_lora_changelist"))
    rows = {lora.name: lora for lora in response.context["cl"].result_list}
    assert rows["Used"].resident_on == ["gpu-a:7"] and rows["Unused"].resident_on == []
    html = response.content.decode()
    assert "Foggy harbour" in html and "Old look" not in html
    assert "1 worker" in html

    page = admin_client.get(reverse("admin:catalog_lora_change", args=[used.pk])).content.decode()
    assert "Foggy harbour" in page and "gpu-a:7" in page and used.sha256 in page


def test_the_preload_action_asks_every_worker_to_load_the_lora(admin_client, tiny_lora_dir):
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(name="Grain", upload=ContentFile(handle.read(), name="a.safetensors"))
    assert lora.preload_requested_at is None
    response = admin_client.post(
        reverse("admin:catalog_lora_changelist"),
        {"action": "preload_on_workers", "_selected_action": [lora.pk]},
        follow=True,
    )
    assert "pre-load 1 LoRA" in response.content.decode()
    lora.refresh_from_db()
    assert lora.preload_requested_at is not None


def test_deleting_an_unused_lora_removes_its_file(
    admin_client, tiny_lora_dir, django_capture_on_commit_callbacks
):
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(name="Spare", upload=ContentFile(handle.read(), name="s.safetensors"))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:catalog_lora_delete", args=[lora.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Lora.objects.exists() and not default_storage.exists(lora.file.name)


def test_a_lora_an_old_style_version_uses_cannot_be_deleted(admin_client, tiny_lora_dir):
    from mockups.catalog.services import style_version_create

    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(name="Kept", upload=ContentFile(handle.read(), name="k.safetensors"))
    style = make_style(loras=[(lora, 0.5)])
    style_version_create(style=style, loras=[])
    response = admin_client.post(reverse("admin:catalog_lora_delete", args=[lora.pk]), {"post": "yes"})
    assert response.status_code == 200 and "Cannot delete" in response.content.decode()
    assert Lora.objects.filter(pk=lora.pk).exists() and default_storage.exists(lora.file.name)
