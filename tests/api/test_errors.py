from decimal import Decimal

import pytest
from rest_framework.test import APIRequestFactory

from loyalty import errors
from loyalty.api.errors import api_exception_handler
from tests.loyalty.factories import MemberFactory

from .conftest import assign_url, card_url

pytestmark = pytest.mark.django_db


def assert_envelope(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def test_malformed_json_is_400_in_the_envelope(api_client, unassigned_card):
    response = api_client.post(assign_url(unassigned_card.number), "{not json", content_type="application/json")
    assert_envelope(response, 400, "parse_error")


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "null", "NaN"])
def test_a_body_that_is_not_an_object_is_400(api_client, unassigned_card, body):
    response = api_client.post(assign_url(unassigned_card.number), body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid", "parse_error"}


def test_another_content_type_is_415(api_client, unassigned_card):
    response = api_client.post(assign_url(unassigned_card.number), "member_id=1", content_type="text/plain")
    assert_envelope(response, 415, "unsupported_media_type")


def test_a_wrong_method_is_405(api_client, unassigned_card):
    assert_envelope(api_client.delete(card_url(unassigned_card.number)), 405, "method_not_allowed")


def test_an_unknown_api_path_is_404_in_the_envelope(api_client):
    error = assert_envelope(api_client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert error["details"] == {"path": "/api/v1/no-such-thing"}


def test_a_host_outside_allowed_hosts_is_400_in_the_envelope_under_the_api(
    api_client, client, unassigned_card, settings
):
    settings.ALLOWED_HOSTS = ["testserver"]
    assert_envelope(api_client.get(card_url(unassigned_card.number), HTTP_HOST="evil.example"), 400, "bad_request")
    page = client.get("/p/no-such-program/", HTTP_HOST="evil.example")
    assert page.status_code == 400
    assert page["Content-Type"].startswith("text/html")


def test_pages_outside_the_api_keep_djangos_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_validation_errors_name_the_fields(api_client, unassigned_card):
    error = assert_envelope(api_client.post(assign_url(unassigned_card.number), {"member_id": "x"}), 400, "invalid")
    assert error["details"] == {"member_id": ["A valid integer is required."]}
    assert "member_id" in error["message"]


def test_the_rate_limit_is_429_with_retry_after(api_client, unassigned_card, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "1/min"}}
    assert api_client.get(card_url(unassigned_card.number)).status_code == 200
    response = api_client.get(card_url(unassigned_card.number))
    error = assert_envelope(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert error["details"]["retry_after"] == int(response["Retry-After"])


def test_the_rate_limit_counts_per_key(api_client, read_only_client, unassigned_card, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "1/min"}}
    assert api_client.get(card_url(unassigned_card.number)).status_code == 200
    assert read_only_client.get(card_url(unassigned_card.number)).status_code == 200
    assert api_client.get(card_url(unassigned_card.number)).status_code == 429


def test_requests_without_a_key_are_refused_before_the_rate_limit(anonymous_client, unassigned_card, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "1/min"}}
    for _ in range(3):
        assert anonymous_client.get(card_url(unassigned_card.number)).status_code == 401


@pytest.mark.urls("tests.api.urls")
def test_an_unexpected_error_is_a_500_envelope(api_client, caplog):
    api_client.raise_request_exception = False
    response = api_client.get("/api/v1/test/crash")
    assert_envelope(response, 500, "server_error")
    assert "boom" not in response.content.decode()
    assert any("Unhandled error in the API" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.MemberNotFound("No member.", member_id=3), 404),
        (errors.IdempotencyConflict("Used."), 409),
        (errors.InvalidPoints("Zero.", points=0), 400),
        (errors.InsufficientPoints("Short.", available=Decimal("2.50")), 422),
        (errors.LoyaltyError("Generic."), 422),
    ],
)
def test_domain_errors_map_by_class(exc, status):
    request = APIRequestFactory().get("/api/v1/x")
    response = api_exception_handler(exc, {"request": request, "view": None})
    assert response.status_code == status
    assert response.data["error"]["code"] == exc.code
    assert response.data["error"]["message"] == exc.message
    assert isinstance(response.data["error"]["details"], dict)


def test_error_details_are_always_json(api_client):
    exc = errors.LoyaltyError("Odd details.", member=MemberFactory.build(), amount=Decimal("1.10"))
    response = api_exception_handler(exc, {"request": None, "view": None})
    assert response.data["error"]["details"]["amount"] == "1.10"
    assert isinstance(response.data["error"]["details"]["member"], str)


# --- cursor pagination (a test-only list operation, tests/api/urls.py) ------------------------


@pytest.mark.urls("tests.api.urls")
def test_lists_are_paginated_by_cursor_within_the_program(api_client, program, other_program):
    mine = MemberFactory.create_batch(5, program=program)
    MemberFactory.create_batch(3, program=other_program)
    seen, url = [], "/api/v1/test/members?limit=2"
    while url:
        body = api_client.get(url).json()
        assert set(body) == {"results", "next"}
        assert len(body["results"]) <= 2
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert seen == sorted((m.pk for m in mine), reverse=True)


@pytest.mark.urls("tests.api.urls")
def test_a_tampered_cursor_is_400(api_client):
    error = assert_envelope(api_client.get("/api/v1/test/members?cursor=garbage"), 400, "invalid")
    assert "cursor" in error["details"]
