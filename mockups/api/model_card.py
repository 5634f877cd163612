"""The generation model as Replicate's clients see it: ``mockups/product-mockup`` and its one version.

The version id is the SHA-256 of the model's OpenAPI schema (inputs and output), so it changes
exactly when the contract does, and is the same on every server running the same code.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import cache
from typing import Any

from mockups.api.schemas import PredictionInput

MODEL_OWNER = "mockups"
MODEL_NAME = "product-mockup"
MODEL_REF = f"{MODEL_OWNER}/{MODEL_NAME}"
COG_VERSION = "0.13.0"  # the schema dialect we follow; anything from 0.3.9 reads list outputs as lists
VERSION_CREATED_AT = datetime(2026, 1, 1, tzinfo=UTC)
DESCRIPTION = (
    "One product photo in, up to five e-commerce mockups out. The product stays pixel-exact; "
    "only the background is generated, in the styles you pick."
)


@cache
def model_openapi_schema() -> dict[str, Any]:
    """A Cog-style OpenAPI document: ``components.schemas.Input`` and ``Output`` (a list of image URLs)."""
    input_schema = PredictionInput.model_json_schema()
    input_schema["title"] = "Input"
    properties = input_schema.get("properties", {})
    for order, name in enumerate(properties):
        properties[name] = _flat_optional(properties[name])
        properties[name].setdefault("x-order", order)
    return {
        "openapi": "3.0.2",
        "info": {"title": "Mockup Studio product mockup", "version": "1.0.0"},
        "paths": {},
        "components": {
            "schemas": {
                "Input": input_schema,
                "Output": {
                    "title": "Output",
                    "type": "array",
                    "items": {"type": "string", "format": "uri"},
                },
            }
        },
    }


def _flat_optional(prop: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` as Cog writes it: X itself (an absent input is simply left out)."""
    variants = prop.get("anyOf")
    if not isinstance(variants, list):
        return prop
    concrete = [v for v in variants if v.get("type") != "null"]
    if len(concrete) != 1:
        return prop
    flat = {key: value for key, value in prop.items() if key != "anyOf"}
    return {**concrete[0], **flat}


@cache
def model_version_id() -> str:
    canonical = json.dumps(model_openapi_schema(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def version_matches(value: str) -> bool:
    """True for our version id, ``owner/name:<id>``, or ``owner/name`` (meaning the latest version)."""
    value = value.strip()
    if value in (model_version_id(), MODEL_REF):
        return True
    ref, _, version = value.partition(":")
    return ref == MODEL_REF and version == model_version_id()
