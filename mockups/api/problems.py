"""Errors as RFC 7807 problem details (``application/problem+json``).

Every error the API answers with has ``type``, ``title``, ``status`` and ``detail``, plus ``code``
(a stable slug clients can branch on); a 422 also lists each bad field in ``errors``. Replicate's
clients read exactly these members (``replicate.exceptions.ReplicateError``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import ValidationError as PydanticValidationError

from mockups.errors import DomainError, ValidationFailed

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:mockup-studio:problem:"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class FieldsInvalid(ValidationFailed):
    """A 422 that names each bad field; raised by the API's own checks of a request."""

    def __init__(self, errors: list[FieldError], *, code: str = "invalid_parameters") -> None:
        super().__init__(" ".join(f"{e.field}: {e.message}" for e in errors), code=code)
        self.errors = errors

    @classmethod
    def one(cls, field: str, message: str, *, code: str = "invalid_parameters") -> FieldsInvalid:
        return cls([FieldError(field, message)], code=code)


def problem_response(
    *,
    status: int,
    code: str,
    detail: str,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    instance: str = "",
) -> HttpResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": title or _title_for(status),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    response = HttpResponse(json.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _title_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# Messages from JobOptions.validate() are "field: sentence." pieces joined by spaces; these are
# the names it uses, so each piece can be reported against its field.
_SERVICE_FIELDS = (
    "styles",
    "count",
    "seed",
    "steps",
    "guidance",
    "negative_prompt",
    "output_preset",
    "output_format",
    "product_name",
    "webhook_events_filter",
    "Idempotency-Key",
)
_FIELD_PIECE = re.compile(r"(?:^|(?<=\s))(" + "|".join(re.escape(f) for f in _SERVICE_FIELDS) + r"): ")


def field_errors_from_message(message: str, *, default_field: str) -> list[FieldError]:
    """Split a service's "field: message. field: message." text into one error per field."""
    starts = list(_FIELD_PIECE.finditer(message))
    if not starts:
        return [FieldError(default_field, message)]
    errors = []
    for position, match in enumerate(starts):
        end = starts[position + 1].start() if position + 1 < len(starts) else len(message)
        errors.append(FieldError(match.group(1), message[match.end() : end].strip()))
    return errors


def _pydantic_field(loc: tuple[Any, ...] | list[Any]) -> str:
    # Ninja prefixes the source ("body", "query", "path", "form") and the parameter's name; what a
    # client sent is the rest.
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "form", "header", "file"}:
        parts = parts[1:]
        if len(parts) > 1 and parts[0] in {"payload", "body", "data", "params", "filters"}:
            parts = parts[1:]
    return ".".join(parts) or "body"


def field_errors_from_pydantic(errors: list[dict[str, Any]]) -> list[FieldError]:
    result = []
    for error in errors:
        message = str(error.get("msg", "is not valid"))
        result.append(FieldError(_pydantic_field(error.get("loc", ())), message))
    return result


def problem_from_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    from mockups.jobs.services import TooManyJobs

    headers: dict[str, str] = {}
    errors: list[FieldError] | None = None
    if isinstance(exc, TooManyJobs):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, FieldsInvalid):
        errors = exc.errors
    elif exc.status_code == 422:
        default_field = "image" if exc.code.startswith("image") else "body"
        errors = field_errors_from_message(exc.message, default_field=default_field)
    return problem_response(
        status=exc.status_code,
        code=exc.code,
        detail=exc.message,
        errors=errors,
        headers=headers,
        instance=request.path,
    )


def problems_install(api: NinjaAPI) -> None:
    """Make every error the API can answer with a problem document."""

    def domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
        return problem_from_domain_error(request, exc)

    def ninja_validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        errors = field_errors_from_pydantic(exc.errors)
        return problem_response(
            status=422,
            code="invalid_parameters",
            detail="Some values are not valid: " + "; ".join(f"{e.field}: {e.message}" for e in errors) + ".",
            errors=errors,
            instance=request.path,
        )

    def pydantic_validation_error(request: HttpRequest, exc: PydanticValidationError) -> HttpResponse:
        errors: list[dict[str, Any]] = [dict(e) for e in exc.errors(include_url=False)]
        return ninja_validation_error(request, NinjaValidationError(errors))

    def authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return problem_response(
            status=401,
            code="unauthenticated",
            detail="Send a valid API key as 'Authorization: Bearer <key>' (or 'Token <key>'); "
            "this one is missing, unknown or revoked.",
            headers={"WWW-Authenticate": 'Bearer realm="mockups"'},
            instance=request.path,
        )

    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return problem_response(
            status=exc.status_code, code="http_error", detail=str(exc), instance=request.path
        )

    def not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem_response(
            status=404, code="not_found", detail="There is nothing here.", instance=request.path
        )

    def too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem_response(
            status=413,
            code="request_too_large",
            detail="The request body is too large. Upload big photos as multipart files "
            "(or to /v1/files) rather than as data URIs.",
            instance=request.path,
        )

    def malformed_body(request: HttpRequest, exc: Exception) -> HttpResponse:
        return problem_response(
            status=400,
            code="malformed_body",
            detail=f"The request body cannot be read as its Content-Type says ({exc}).",
            instance=request.path,
        )

    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        logger.exception("unexpected error on %s %s", request.method, request.path, exc_info=exc)
        return problem_response(
            status=500,
            code="server_error",
            detail="Something went wrong on our side; it has been logged. Try again in a moment.",
            instance=request.path,
        )

    handlers: list[tuple[type[Exception], Callable[[HttpRequest, Any], HttpResponse]]] = [
        (DomainError, domain_error),
        (NinjaValidationError, ninja_validation_error),
        (PydanticValidationError, pydantic_validation_error),
        (AuthenticationError, authentication_error),
        (HttpError, http_error),
        (Http404, not_found),
        (RequestDataTooBig, too_big),
        (MultiPartParserError, malformed_body),
        (UnreadablePostError, malformed_body),
        (Exception, unexpected),
    ]
    for exc_class, handler in handlers:
        api.add_exception_handler(exc_class, handler)
