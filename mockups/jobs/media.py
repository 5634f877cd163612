"""Signed, expiring URLs for stored images, so an ``<img>`` tag needs no key or session.

A URL names one stored file and carries an HMAC over that name and its time of signing
(``django.core.signing``); it answers 404 once it expires or if a character is changed. Storage
names are generated (``jobs/<merchant>/<job>/<kind>-<random>.png``), never typed by a user.
"""

from __future__ import annotations

import mimetypes

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest
from django.urls import reverse

SALT = "mockups.media"


def media_url(name: str | None, *, absolute_base: str = "") -> str:
    """A signed path (or URL, with ``absolute_base`` like ``https://host``) for a stored file."""
    if not name:
        return ""
    token = signing.TimestampSigner(salt=SALT).sign_object(name, compress=True)
    return absolute_base.rstrip("/") + reverse("media-signed", args=[token])


def media_name_from_token(token: str) -> str:
    try:
        name = signing.TimestampSigner(salt=SALT).unsign_object(token, max_age=settings.MEDIA_URL_MAX_AGE)
    except signing.BadSignature as exc:  # also SignatureExpired
        raise Http404("This image link is invalid or has expired.") from exc
    if not isinstance(name, str) or ".." in name or name.startswith("/"):
        raise Http404("This image link is invalid.")
    return name


def media_serve(request: HttpRequest, token: str) -> FileResponse:
    name = media_name_from_token(token)
    if not default_storage.exists(name):
        raise Http404("This image no longer exists.")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    response["Cache-Control"] = f"private, max-age={min(settings.MEDIA_URL_MAX_AGE, 3600)}"
    response["X-Content-Type-Options"] = "nosniff"
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="{name.rsplit("/", 1)[-1]}"'
    return response
