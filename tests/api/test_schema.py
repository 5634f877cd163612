"""schemathesis against our own OpenAPI schema: whatever it sends, no server error, and every response
matches what the schema says (status codes, content types, headers, bodies)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api.conftest import World

# Unknown query parameters and headers are ignored, as HTTP APIs commonly do (proxies and clients add
# their own); the schema has no way to say otherwise, so schemathesis is told not to send them as errors.
CONFIG = SchemathesisConfig.from_dict({"generation": {"allow-extra-parameters": False}})
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", WSGIHandler(), config=CONFIG)

# "A schema-valid request is accepted" cannot hold here: a schema can say that ``image`` is a string,
# not that it is a photo of a product, so generated inputs are (rightly) refused with a 422.
EXCLUDED = [positive_data_acceptance]


@pytest.mark.django_db
@pytest.mark.usefixtures("in_process_wsgi")
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_every_request_as_its_schema_says(case, world: World):
    case.call_and_validate(headers={"Authorization": f"Bearer {world.acme.key}"}, excluded_checks=EXCLUDED)
