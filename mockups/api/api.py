"""One NinjaAPI for both doors: the native API at ``/api/v1/``, the Replicate-compatible one at ``/v1/``.

OpenAPI at ``/api/openapi.json``, interactive docs at ``/api/docs``. Every operation needs an API
key; every error is an RFC 7807 problem document.
"""

from __future__ import annotations

from typing import Any

from ninja import NinjaAPI

from mockups.api.auth import ApiKeyAuth
from mockups.api.native import router as native_router
from mockups.api.problems import PROBLEM_CONTENT_TYPE, problems_install
from mockups.api.replicate import router as replicate_router


class MockupsAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: Any = None) -> Any:
        """Ninja's schema, error bodies declared as ``application/problem+json``, 429 with Retry-After."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if int(status) >= 400 and "application/json" in content:
                        response["content"] = {PROBLEM_CONTENT_TYPE: content["application/json"]}
                    if int(status) == 429:
                        response["headers"] = {
                            "Retry-After": {
                                "description": "Seconds to wait before trying again.",
                                "schema": {"type": "integer"},
                                "required": True,
                            }
                        }
        return schema


api = MockupsAPI(
    title="Mockup Studio API",
    version="1",
    description=(
        "Turn one product photo into five e-commerce mockups. Native API under /api/v1/; "
        "a Replicate-compatible API under /v1/ (model mockups/product-mockup). "
        "Authenticate with 'Authorization: Bearer <API key>'."
    ),
    urls_namespace="api",
    openapi_url="/api/openapi.json",
    docs_url="/api/docs",
    auth=ApiKeyAuth(),
)
problems_install(api)
api.add_router("/api/v1/", native_router)
api.add_router("/v1/", replicate_router)
