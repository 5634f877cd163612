from __future__ import annotations

import pytest

from mockups.catalog.models import Style
from mockups.catalog.services import style_version_create
from mockups.errors import ValidationFailed
from tests.factories import make_job, make_style

pytestmark = pytest.mark.django_db


def test_the_data_migration_creates_at_least_five_styles_including_a_pure_white_studio_one():
    styles = Style.objects.select_related("current_version")
    assert styles.count() >= 5
    assert all(s.current_version and "{product}" in s.current_version.prompt_template for s in styles)
    white = [
        s
        for s in styles
        if s.current_version.backdrop == "studio"
        and s.current_version.studio_fill == "white"
        and s.current_version.output_preset == "marketplace_2000"
    ]
    assert white, "a pure-white marketplace studio style must exist"


def test_editing_a_style_makes_a_new_version_and_a_job_keeps_the_one_it_used(tenants):
    style = make_style(steps=30)
    job = make_job(merchant=tenants.merchant, styles=[style])
    used = job.variations.get().style_version
    new = style_version_create(style=style, steps=12)
    style.refresh_from_db()
    assert (used.number, new.number) == (1, 2)
    assert style.current_version == new and new.steps == 12
    assert new.prompt_template == used.prompt_template  # unchanged fields carry over
    assert job.variations.get().style_version.steps == 30


def test_a_prompt_template_without_the_product_slot_is_refused():
    with pytest.raises(ValidationFailed, match=r"\{product\}"):
        make_style(prompt_template="a nice table")
