"""Styles in the admin: every save of their settings is a new version, jobs keep theirs, merchants see
what the operators enable, order and allow."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from mockups.catalog.models import Style, StyleVersion
from mockups.catalog.selectors import style_list_for_merchant
from mockups.catalog.services import lora_create
from tests.admin.conftest import admin_form_data, tiny_lora_file
from tests.factories import make_job, make_style

pytestmark = pytest.mark.django_db


def change_url(style: Style) -> str:
    return reverse("admin:catalog_style_change", args=[style.pk])


def edit(client, style: Style, **changes):
    data = admin_form_data(client.get(change_url(style)))
    data.update({key: str(value) for key, value in changes.items()})
    return client.post(change_url(style), data)


def errors_of(response) -> str:
    assert response.status_code == 200, "the form was expected back with errors"
    form = response.context["adminform"].form
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


def test_adding_a_style_creates_its_first_version(admin_client):
    response = admin_client.post(
        reverse("admin:catalog_style_add"),
        {
            "name": "Linen table",
            "slug": "linen-table",
            "description": "On a linen tablecloth",
            "is_enabled": "on",
            "position": "60",
            "prompt_template": "{product} on a linen tablecloth, soft daylight",
            "negative_prompt": "text",
            "backdrop": "generated",
            "studio_fill": "white",
            "studio_color": "#ffffff",
            "studio_color_2": "#e9e9e9",
            "controlnet_scale": "0.7",
            "steps": "25",
            "guidance": "5.5",
            "scheduler": "dpmpp_2m_karras",
            "shadow": "soft",
            "output_preset": "square_1024",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, errors_of(response)
    style = Style.objects.get(slug="linen-table")
    assert style.current_version is not None and style.current_version.number == 1
    assert style.current_version.steps == 25 and style.current_version.guidance == 5.5


def test_a_job_keeps_its_style_version_after_the_style_is_edited(admin_client, tenants):
    style = make_style(prompt_template="{product} on oak", steps=30)
    first = style.current_version
    job = make_job(merchant=tenants.merchant, styles=[style])

    response = edit(admin_client, style, prompt_template="{product} on walnut, evening light", steps=22)
    assert response.status_code == 302, errors_of(response)

    style.refresh_from_db()
    assert style.current_version.number == 2
    assert style.current_version.prompt_template == "{product} on walnut, evening light"
    assert style.current_version.steps == 22
    variation = job.variations.get()
    assert variation.style_version_id == first.pk
    # The old version itself is untouched.
    first.refresh_from_db()
    assert (first.number, first.prompt_template, first.steps) == (1, "{product} on oak", 30)


def test_saving_without_changing_a_setting_makes_no_new_version(admin_client):
    style = make_style()
    response = edit(admin_client, style, description="Only the description changed")
    assert response.status_code == 302, errors_of(response)
    style.refresh_from_db()
    assert style.current_version.number == 1 and style.description == "Only the description changed"
    assert StyleVersion.objects.filter(style=style).count() == 1


def test_changing_a_lora_weight_makes_a_new_version_that_keeps_the_old_one(admin_client, tiny_lora_dir):
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(name="Grain", upload=ContentFile(handle.read(), name="g.safetensors"))
    style = make_style(loras=[(lora, 0.8)])
    response = edit(admin_client, style, weight_1="0.4")
    assert response.status_code == 302, errors_of(response)
    style.refresh_from_db()
    assert [(link.lora_id, link.weight) for link in style.current_version.lora_links.all()] == [
        (lora.pk, 0.4)
    ]
    old = style.versions.get(number=1)
    assert [(link.lora_id, link.weight) for link in old.lora_links.all()] == [(lora.pk, 0.8)]


def test_a_lora_without_a_weight_gets_its_preferred_weight(admin_client, tiny_lora_dir):
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(
            name="Grain", upload=ContentFile(handle.read(), name="g.safetensors"), preferred_weight=0.65
        )
    style = make_style()
    response = edit(admin_client, style, lora_1=lora.pk, weight_1="")
    assert response.status_code == 302, errors_of(response)
    style.refresh_from_db()
    assert [link.weight for link in style.current_version.lora_links.all()] == [0.65]


def test_a_template_without_the_product_is_refused(admin_client):
    style = make_style()
    response = edit(admin_client, style, prompt_template="a nice kitchen")
    assert "must contain {product}" in errors_of(response)
    style.refresh_from_db()
    assert style.current_version.number == 1


def test_the_same_lora_twice_is_refused(admin_client, tiny_lora_dir):
    with tiny_lora_file(tiny_lora_dir, seed=1).open("rb") as handle:
        lora = lora_create(name="Grain", upload=ContentFile(handle.read(), name="g.safetensors"))
    style = make_style()
    response = edit(admin_client, style, lora_1=lora.pk, lora_2=lora.pk)
    assert "already used by this style" in errors_of(response)


def test_an_edit_over_someone_elses_newer_save_is_refused(admin_client):
    from mockups.catalog.services import style_version_create

    style = make_style(steps=30)
    data = admin_form_data(admin_client.get(change_url(style)))
    style_version_create(style=style, guidance=9.0)  # another operator saves first
    data["steps"] = "12"
    response = admin_client.post(change_url(style), data)
    assert "Someone saved this style (now version 2)" in errors_of(response)
    style.refresh_from_db()
    assert (style.current_version.number, style.current_version.guidance) == (2, 9.0)


def test_the_change_page_shows_the_final_prompt_and_the_version_history(admin_client):
    style = make_style(prompt_template="studio shot of {product}, rim light", negative_prompt="blurry")
    from mockups.catalog.services import style_version_create

    style_version_create(style=style, steps=18)
    page = admin_client.get(change_url(style)).content.decode()
    assert "studio shot of a white ceramic coffee mug, rim light" in page
    assert "studio shot of a red canvas sneaker, rim light" in page
    assert 'id="prompt-preview"' in page and "prompt-preview-negative" in page
    assert "Version history" in page and "18 steps" in page and "30 steps" in page


def test_operators_enable_and_order_styles_from_the_list(admin_client, tenants):
    first, second = make_style(name="First", position=10), make_style(name="Second", position=20)
    listed = [style.pk for style in style_list_for_merchant(merchant=tenants.merchant)]
    assert listed.index(first.pk) < listed.index(second.pk)

    changelist = admin_client.get(reverse("admin:catalog_style_changelist"))
    formset = changelist.context["cl"].formset
    data = {f"form-{key}": value for key, value in formset.management_form.initial.items()}
    data.update({"form-TOTAL_FORMS": str(len(formset.forms)), "_save": "Save"})
    for n, form in enumerate(formset.forms):
        style = form.instance
        data[f"form-{n}-id"] = str(style.pk)
        data[f"form-{n}-position"] = "5" if style.pk == second.pk else str(style.position)
        if style.is_enabled and style.pk != first.pk:
            data[f"form-{n}-is_enabled"] = "on"
    response = admin_client.post(reverse("admin:catalog_style_changelist"), data)
    assert response.status_code == 302

    listed = [style.pk for style in style_list_for_merchant(merchant=tenants.merchant)]
    assert first.pk not in listed  # disabled
    assert listed[0] == second.pk  # moved to the top
    second.refresh_from_db()
    assert second.current_version.number == 1  # order and switch are not versioned settings


def test_the_enable_and_disable_actions(admin_client, tenants):
    style = make_style()
    admin_client.post(
        reverse("admin:catalog_style_changelist"), {"action": "disable", "_selected_action": [style.pk]}
    )
    assert style not in style_list_for_merchant(merchant=tenants.merchant)
    admin_client.post(
        reverse("admin:catalog_style_changelist"), {"action": "enable", "_selected_action": [style.pk]}
    )
    assert style in style_list_for_merchant(merchant=tenants.merchant)


def test_a_style_restricted_to_one_merchant_is_offered_to_that_merchant_only(admin_client, tenants):
    style = make_style()
    response = edit(admin_client, style, restricted_to=tenants.merchant.pk)
    assert response.status_code == 302, errors_of(response)
    assert style in style_list_for_merchant(merchant=tenants.merchant)
    assert style not in style_list_for_merchant(merchant=tenants.other_merchant)
    style.refresh_from_db()
    assert style.current_version.number == 1  # who may use it is not a versioned setting


def test_a_style_no_job_used_can_be_deleted(admin_client):
    style = make_style()
    from mockups.catalog.services import style_version_create

    style_version_create(style=style, steps=12)
    response = admin_client.post(reverse("admin:catalog_style_delete", args=[style.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Style.objects.filter(pk=style.pk).exists()
    assert not StyleVersion.objects.filter(style_id=style.pk).exists()


def test_a_style_a_job_used_cannot_be_deleted(admin_client, tenants):
    style = make_style(name="Beloved")
    make_job(merchant=tenants.merchant, styles=[style, style])
    page = admin_client.get(reverse("admin:catalog_style_delete", args=[style.pk])).content.decode()
    assert "2 mockup variations were made with this style" in page and "Disable the style instead" in page
    admin_client.post(
        reverse("admin:catalog_style_changelist"),
        {"action": "delete_selected", "_selected_action": [style.pk], "post": "yes"},
    )
    assert Style.objects.filter(pk=style.pk).exists()
