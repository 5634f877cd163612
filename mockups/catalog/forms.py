"""The operators' forms for the catalog: LoRA uploads, versioned styles, base models and ControlNets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from mockups.catalog.models import BaseModel, ControlNetModel, Lora, Style, StyleVersion
from mockups.catalog.services import VERSION_FIELDS, lora_file_inspect, style_version_validate
from mockups.errors import ValidationFailed

# A style version may combine this many LoRAs.
MAX_STYLE_LORAS = 3
LORA_WEIGHT_RANGE = (-2.0, 2.0)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class LoraForm(forms.ModelForm):
    """Upload a LoRA (required when adding, optional when changing: a new file replaces the old one).

    The file is checked in :meth:`clean_upload` (extension, size limit, header parsed without loading
    tensors, keys against the UNet); what the check learned is kept in ``self.lora_info`` for the save.
    """

    upload = forms.FileField(
        label="LoRA file",
        required=False,
        help_text="A .safetensors LoRA for the SDXL UNet. Pickled .ckpt/.pt/.bin files are refused. "
        "When changing a LoRA, a new file replaces the current one for every style that uses it.",
        widget=forms.ClearableFileInput(attrs={"accept": ".safetensors"}),
    )

    class Meta:
        model = Lora
        fields = ["name", "trigger_words", "preferred_weight", "licence_note"]
        help_texts = {
            "trigger_words": "Words the LoRA was trained on; put them in the style's prompt template.",
            "preferred_weight": "The weight a style starts with when it adds this LoRA (-2 to 2).",
            "licence_note": "Where the file comes from and under which licence it may be used.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lora_info: Any = None
        self.fields["upload"].required = self.instance.pk is None

    def clean_upload(self) -> Any:
        upload = self.cleaned_data.get("upload")
        if not upload:
            return None
        try:
            self.lora_info = lora_file_inspect(upload=upload)
        except ValidationFailed as exc:
            raise ValidationError(exc.message, code=exc.code) from exc
        return upload

    def clean_preferred_weight(self) -> float:
        weight = float(self.cleaned_data["preferred_weight"])
        low, high = LORA_WEIGHT_RANGE
        if not low <= weight <= high:
            raise ValidationError(f"The weight must be between {low:g} and {high:g}.")
        return weight


def _model_source_clean(source: str) -> str:
    source = source.strip()
    if source.startswith(("/", "~", ".")):
        path = Path(source).expanduser()
        if not path.is_absolute():
            raise ValidationError("A local folder must be an absolute path, e.g. /models/sdxl-base.")
        return str(path)
    if not _HUB_ID.match(source):
        raise ValidationError(
            "Give a hub id like stabilityai/stable-diffusion-xl-base-1.0 (read from the local hub cache "
            "only, never downloaded) or an absolute path to a local diffusers folder."
        )
    return source


class _RegisteredModelForm(forms.ModelForm):
    """Name, source and dtype of a base model or ControlNet, and whether it is the one default.

    ``make_default`` is a plain form field, not the model's ``is_default``: making this one the
    default also unsets the previous one (a service call in the admin), which the model's
    one-default constraint would otherwise refuse before the save.
    """

    make_default = forms.BooleanField(
        required=False,
        label="Default",
        help_text="The one GPU workers load (replaces the current default); read when a worker starts.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["make_default"].initial = bool(self.instance.pk and self.instance.is_default)

    def clean_source(self) -> str:
        return _model_source_clean(self.cleaned_data["source"])


class BaseModelForm(_RegisteredModelForm):
    class Meta:
        model = BaseModel
        fields = ["name", "source", "dtype"]


class ControlNetForm(_RegisteredModelForm):
    class Meta:
        model = ControlNetModel
        fields = ["name", "source", "dtype"]


def _version_field(name: str, **kwargs: Any) -> Any:
    """The form field of one StyleVersion field, with the model's choices, limits and help text."""
    field = StyleVersion._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field.formfield(**kwargs)


def _lora_field(n: int) -> forms.ModelChoiceField:
    return forms.ModelChoiceField(queryset=Lora.objects.order_by("name"), required=False, label=f"LoRA {n}")


def _weight_field(n: int) -> forms.FloatField:
    help_text = "Empty: the LoRA's preferred weight." if n == 1 else ""
    return forms.FloatField(required=False, label=f"Weight {n}", help_text=help_text)


class StyleForm(forms.ModelForm):
    """A style's own fields plus every field of its versioned settings.

    The version fields start from the current version. Saving never changes a version: the admin
    makes a new one (``style_version_create``) when any of them, or the LoRAs, changed. ``based_on``
    carries the version number the form was loaded with, so an edit made over someone else's newer
    save is refused instead of silently undoing it.
    """

    based_on = forms.IntegerField(widget=forms.HiddenInput, required=False)
    prompt_template = _version_field("prompt_template", widget=forms.Textarea(attrs={"rows": 3, "cols": 90}))
    negative_prompt = _version_field("negative_prompt", widget=forms.Textarea(attrs={"rows": 2, "cols": 90}))
    backdrop = _version_field("backdrop")
    studio_fill = _version_field("studio_fill")
    studio_color = _version_field("studio_color", widget=forms.TextInput(attrs={"type": "color"}))
    studio_color_2 = _version_field("studio_color_2", widget=forms.TextInput(attrs={"type": "color"}))
    controlnet_scale = _version_field("controlnet_scale")
    steps = _version_field("steps")
    guidance = _version_field("guidance")
    scheduler = _version_field("scheduler")
    shadow = _version_field("shadow")
    output_preset = _version_field("output_preset")
    lora_1, weight_1 = _lora_field(1), _weight_field(1)
    lora_2, weight_2 = _lora_field(2), _weight_field(2)
    lora_3, weight_3 = _lora_field(3), _weight_field(3)

    class Meta:
        model = Style
        fields = ["name", "slug", "description", "is_enabled", "position", "restricted_to"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current: StyleVersion | None = self.instance.current_version if self.instance.pk else None
        if current is not None:
            for name in VERSION_FIELDS:
                self.initial.setdefault(name, getattr(current, name))
            links = list(current.lora_links.select_related("lora").order_by("id"))
            for n, link in enumerate(links[:MAX_STYLE_LORAS], start=1):
                self.initial[f"lora_{n}"] = link.lora.pk
                self.initial[f"weight_{n}"] = link.weight
            self.initial["based_on"] = current.number

    # -- what the admin saves --------------------------------------------------------------------

    def version_values(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in VERSION_FIELDS}

    def version_loras(self) -> list[tuple[Lora, float]]:
        chosen: list[tuple[Lora, float]] = []
        for n in range(1, MAX_STYLE_LORAS + 1):
            lora = self.cleaned_data.get(f"lora_{n}")
            if lora is not None:
                weight = self.cleaned_data.get(f"weight_{n}")
                chosen.append((lora, lora.preferred_weight if weight is None else float(weight)))
        return chosen

    def version_changed(self) -> bool:
        """Whether saving must make a new version (always for a new style)."""
        current = self.instance.current_version if self.instance.pk else None
        if current is None:
            return True
        if any(getattr(current, name) != value for name, value in self.version_values().items()):
            return True
        now = sorted((lora.pk, weight) for lora, weight in self.version_loras())
        before = sorted((link.lora_id, link.weight) for link in current.lora_links.all())
        return now != before

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if any(name not in cleaned for name in VERSION_FIELDS):
            return cleaned  # a field error is already shown
        try:
            style_version_validate(self.version_values())
        except ValidationFailed as exc:
            self.add_error("prompt_template" if "{product}" in exc.message else None, exc.message)
        seen: set[int] = set()
        low, high = LORA_WEIGHT_RANGE
        for n in range(1, MAX_STYLE_LORAS + 1):
            lora, weight = cleaned.get(f"lora_{n}"), cleaned.get(f"weight_{n}")
            if lora is None:
                continue
            if lora.pk in seen:
                self.add_error(f"lora_{n}", f"{lora.name} is already used by this style.")
            seen.add(lora.pk)
            if weight is not None and not low <= weight <= high:
                self.add_error(f"weight_{n}", f"The weight must be between {low:g} and {high:g}.")
        current = self.instance.current_version if self.instance.pk else None
        based_on = cleaned.get("based_on")
        if current is not None and based_on is not None and based_on != current.number:
            raise ValidationError(
                f"Someone saved this style (now version {current.number}) while you were editing "
                f"version {based_on}. Reload the page to see their changes, then make yours again."
            )
        return cleaned
