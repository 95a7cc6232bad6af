"""Property-based contract test: Schemathesis generates requests from the OpenAPI schema the
code serves (/api/schema/) for every operation, sends them to the Django app in-process
(WSGI) with a key holding every scope, and checks each response: never a server error, and
the status code, content type and body are the ones the schema documents.

The program has a member with points, a card, a reward and a coupon, so generated requests
also reach the paths past the look-ups. Bounded (`max_examples`) to keep the suite fast;
`SCHEMATHESIS_EXAMPLES=500 pytest tests/api/test_schemathesis.py` digs deeper."""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks as core_checks
from schemathesis.specs.openapi import checks as openapi_checks

from loyalty.services import points_earn
from rewards import services as rewards
from tests.api.conftest import make_key
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.rewards.factories import RewardFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# No server error, and every status, content type, header and body as the schema documents.
# Not `positive_data_acceptance`: the schema cannot say every rule a 400 enforces (a card
# number's check digit, exactly one member reference, a points step), so a schema-valid body
# may rightly be refused with the documented 400.
CHECKS = [
    core_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "15"))


def _served_schema() -> dict:
    """The schema /api/schema/ serves, generated in-process (no request, no database)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


@pytest.fixture
def app(db, settings):
    """The WSGI app, with no rate limit in the way of generated traffic (the throttle has its
    own tests) and, as Django's test client does, without closing the test's connection at
    the end of each request."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "100000/minute"),
    }
    cache.clear()
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_headers(db):
    program = ProgramFactory(min_redemption=0)
    member = MemberFactory(program=program, external_id="cust-1")
    points_earn(program=program, member_id=member.pk, points=10_000)
    CardFactory(program=program, member=member, status="active")
    reward = RewardFactory(program=program, cost_points=100)
    rewards.reward_redeem(program=program, member=member, reward=reward)
    _, secret = make_key(program, scopes=["read", "write", "adjust"])
    return {"Authorization": f"Api-Key {secret}"}


schema = schemathesis.openapi.from_dict(_served_schema())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_honours_the_schema(case, app, api_headers):
    # A generated `Host` header is the web server's business: Django refuses a host outside
    # ALLOWED_HOSTS with a 400 before any view (JSON under /api/, tests/api/test_errors.py).
    if case.headers:
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "host"}
    case.call_and_validate(app=app, headers=api_headers, checks=CHECKS)
