"""API keys in the Authorization header: ``Bearer <key>``, or ``Token <key>`` (Replicate's older form)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from mockups.accounts.models import ApiKey, Merchant
from mockups.accounts.services import api_key_authenticate

SCHEMES = ("bearer", "token")


class ApiKeyAuth(HttpBearer):
    """Authenticates with a merchant's API key; ``request.auth`` is then the ApiKey.

    A missing, malformed, unknown or revoked key (or a deactivated merchant) answers 401.
    """

    def __call__(self, request: HttpRequest) -> ApiKey | None:
        value = request.headers.get(self.header, "")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() not in SCHEMES or not token.strip():
            return None
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        return api_key_authenticate(raw_key=token)


def request_merchant(request: HttpRequest) -> Merchant:
    """The merchant whose key authenticated this request (only called inside authenticated operations)."""
    key: Any = getattr(request, "auth", None)
    if not isinstance(key, ApiKey):
        raise RuntimeError("request_merchant() called on an operation without API key authentication")
    return key.merchant
