"""Domain errors: each carries a message for humans, an HTTP status and whether a retry can help."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a merchant or storefront may see.

    ``code`` is a stable machine-readable slug, ``message`` a sentence for a person,
    ``status_code`` the HTTP status the API and pages answer with, and ``retryable`` tells
    the queue whether trying again could succeed (transient) or not (permanent).
    """

    code = "error"
    status_code = 400
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code

    def __str__(self) -> str:
        return self.message


class NotFound(DomainError):
    """Missing and not-yours look the same: never reveal that another merchant's object exists."""

    code = "not_found"
    status_code = 404


class ValidationFailed(DomainError):
    code = "invalid"
    status_code = 422


class Conflict(DomainError):
    code = "conflict"
    status_code = 409


class TransientError(DomainError):
    """Something outside the request failed (GPU busy, storage hiccup): retried with backoff."""

    code = "transient"
    status_code = 503
    retryable = True
