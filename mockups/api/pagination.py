"""Cursor pagination, newest first, stable while new rows arrive.

A cursor names the boundary row by (created_at, public_id) and the direction to read from it;
it is opaque to clients (URL-safe base64 of a small JSON document). Pages are read with a
keyset query, so a page costs the same at any depth and no row is skipped or repeated when
jobs are created between two requests.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from django.db.models import Model, Q, QuerySet

from mockups.api.problems import FieldsInvalid

T = TypeVar("T", bound=Model)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    previous_cursor: str | None

    def links(self, url: str, **query: Any) -> tuple[str | None, str | None]:
        """Absolute ``next`` and ``previous`` URLs (``url`` without a query string)."""

        def link(cursor: str | None) -> str | None:
            if cursor is None:
                return None
            params = {key: value for key, value in query.items() if value is not None}
            return f"{url}?{urlencode({**params, 'cursor': cursor})}"

        return link(self.next_cursor), link(self.previous_cursor)


def _encode(direction: str, row: Any) -> str:
    raw = json.dumps({"d": direction, "t": row.created_at.isoformat(), "u": row.public_id.hex})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        direction = data["d"]
        if direction not in ("n", "p"):
            raise ValueError(direction)
        moment = datetime.fromisoformat(data["t"])
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return direction, moment, uuid.UUID(hex=data["u"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise FieldsInvalid.one(
            "cursor", "is not a cursor this API gave out.", code="invalid_cursor"
        ) from exc


def keyset_page(queryset: QuerySet[T], *, cursor: str | None, limit: int) -> Page[T]:
    """One page of ``queryset`` (rows with ``created_at`` and ``public_id``), newest first."""
    newest_first = queryset.order_by("-created_at", "-public_id")
    if not cursor:
        rows = list(newest_first[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, _encode("n", rows[-1]) if more else None, None)

    direction, moment, public_id = _decode(cursor)
    older = Q(created_at__lt=moment) | Q(created_at=moment, public_id__lt=public_id)
    newer = Q(created_at__gt=moment) | Q(created_at=moment, public_id__gt=public_id)
    if direction == "n":
        rows = list(newest_first.filter(older)[: limit + 1])
        more_older = len(rows) > limit
        rows = rows[:limit]
        more_newer = queryset.filter(newer | Q(created_at=moment, public_id=public_id)).exists()
    else:
        rows = list(queryset.filter(newer).order_by("created_at", "public_id")[: limit + 1])
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        more_older = queryset.filter(older | Q(created_at=moment, public_id=public_id)).exists()
    if not rows:
        return Page([], None, None)
    return Page(
        rows,
        _encode("n", rows[-1]) if more_older else None,
        _encode("p", rows[0]) if more_newer else None,
    )
