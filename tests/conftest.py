"""Fixtures shared by the whole suite: isolated media storage and the three-merchant world."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_merchant, make_user


@pytest.fixture(autouse=True)
def _isolated_media(settings: Any, tmp_path: Path) -> None:
    """Every test writes its files into its own folder, never into the developer's data."""
    settings.MEDIA_ROOT = tmp_path / "media"


@dataclass
class Tenants:
    """An owner and a teammate of one merchant, and a stranger who works for another."""

    merchant: Any
    owner: Any
    teammate: Any
    other_merchant: Any
    stranger: Any


@pytest.fixture
def tenants(db: None) -> Tenants:
    merchant = make_merchant("Acme Mugs")
    other = make_merchant("Bolt Bottles")
    return Tenants(
        merchant=merchant,
        owner=make_user(merchant=merchant, role="owner"),
        teammate=make_user(merchant=merchant, role="member"),
        other_merchant=other,
        stranger=make_user(merchant=other, role="owner"),
    )
