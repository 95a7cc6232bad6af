import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

import loyalty.admin.api_keys  # noqa: F401  (registers the admin; loyalty/admin/__init__.py imports it too)
from loyalty.services import api_key_create, points_earn
from tests.cards.factories import CardFactory


def make_key(program, scopes=("read", "write"), **fields):
    """A saved key of `program` and its secret (the full `<prefix>.<secret>` string)."""
    return api_key_create(program=program, name=fields.pop("name", "test key"), scopes=list(scopes), **fields)


def client_with(secret):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


@pytest.fixture
def api_key(program):
    return make_key(program)


@pytest.fixture
def api_client(api_key):
    """A client with a read+write key of `program`."""
    return client_with(api_key[1])


@pytest.fixture
def read_only_client(program):
    return client_with(make_key(program, scopes=["read"])[1])


@pytest.fixture
def write_only_client(program):
    return client_with(make_key(program, scopes=["write"])[1])


@pytest.fixture
def other_program_client(other_program):
    return client_with(make_key(other_program)[1])


@pytest.fixture
def anonymous_client():
    return APIClient()


@pytest.fixture
def member_with_points(member):
    """120 available points (an earn through the ledger service)."""
    points_earn(program=member.program, member_id=member.pk, points=120, reason="test")
    member.refresh_from_db()
    return member


@pytest.fixture
def unassigned_card(program):
    return CardFactory(program=program)


@pytest.fixture
def active_card(member_with_points):
    return CardFactory(member=member_with_points)


@pytest.fixture
def blocked_card(member):
    return CardFactory(member=member, blocked=True)


@pytest.fixture
def other_program_card(other_program):
    return CardFactory(program=other_program)


@pytest.fixture
def revoked_key(program):
    api_key, secret = make_key(program)
    api_key.revoked = True
    api_key.save()
    return secret


@pytest.fixture
def expired_key(program):
    return make_key(program, expiry_date=timezone.now() - dt.timedelta(minutes=1))[1]


def card_url(number):
    return f"/api/v1/cards/{number}"


def assign_url(number):
    return f"/api/v1/cards/{number}/assign"


def wrong_check_digit(number):
    return number[:-1] + str((int(number[-1]) + 1) % 10)


# --------------------------------------------------------------------------------------------
# Responses checked against the generated OpenAPI schema


def _as_json_schema(node):
    """An OpenAPI 3.0 schema object as JSON Schema: `nullable` becomes a union with null, and an
    object with declared properties admits no others (a response field missing from the
    schema is a schema bug too)."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items() if key not in ("nullable", "readOnly")}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="session")
def openapi_schema():
    """The API's OpenAPI document, as `/api/schema/` serves it (generated once per session)."""
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def assert_matches_schema(openapi_schema):
    """`assert_matches_schema(response, "/api/v1/members/{id}", "get")`: the response's status is
    documented for the operation and its JSON body validates against that status's schema.
    Returns the body."""
    from jsonschema import Draft202012Validator

    components = _as_json_schema(openapi_schema["components"])

    def check(response, path, method):
        operation = openapi_schema["paths"][path][method]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method.upper()} {path} does not document {status}"
        body = response.json()
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        validator = Draft202012Validator(
            {**_as_json_schema(schema), "components": components}, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert not problems, f"{method.upper()} {path} {status} breaks the schema: {problems}"
        return body

    return check
