"""Small pieces the admin sites of every app share."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class ViewOnly:
    """Rows that are a record (jobs, versions, deliveries, heartbeats): no adding or editing here."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnly(ViewOnly):
    """Like ViewOnly, and no deleting either: the history must stay whole."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
