"""Bad input over HTTP (docs/api.md, "Limits" and "Errors"): each refusal is the error format's
400 or 413, on the real endpoints, and writes nothing. Also: what a key without the `read`
scope sees in the answer of a write, and the words of a scope error."""

import base64
import datetime as dt
import json
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from cards.models import Card
from loyalty.models import Activity, IdempotencyRecord, LedgerEntry, Member
from loyalty.services import points_earn
from rewards import services as rewards_services
from rewards.models import Redemption
from tests.api.conftest import client_with, make_key
from tests.rewards.factories import RewardFactory
from tests.tiers.factories import TierFactory

pytestmark = pytest.mark.django_db


def written():
    """What a refused request must not change."""
    return {
        model.__name__: model.objects.count()
        for model in (LedgerEntry, Activity, IdempotencyRecord, Member, Redemption, Card)
    } | {"assigned cards": Card.objects.filter(member__isnull=False).count()}


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def post(client, path, body, key="bad-input-1", **extra):
    return client.post(path, body, format="json", headers={"Idempotency-Key": key}, **extra)


def purchase(member, **fields):
    return {"type": "purchase", "member_id": member.pk, "order_id": "B-1", "amount": "10.00", **fields}


@pytest.fixture
def coupon(member_with_points):
    program = member_with_points.program
    program.min_redemption = 0
    program.save()
    reward = RewardFactory(program=program, cost_points=100)
    return rewards_services.reward_redeem(program=program, member=member_with_points, reward=reward).redemption


# --------------------------------------------------------------------------------------------
# 413: a body over the limit


@pytest.mark.parametrize("path", ["/api/v1/activities", "/api/v1/members", "/api/v1/redemptions", "/api/v1/transfers"])
def test_a_body_over_the_api_limit_is_413_and_writes_nothing(api_client, member_with_points, settings, path):
    before = written()
    body = purchase(member_with_points, order_id="x" * (settings.API_MAX_BODY_BYTES + 1))
    error = assert_error(post(api_client, path, body), 413, "payload_too_large")
    assert error["details"] == {"max_bytes": settings.API_MAX_BODY_BYTES}
    assert str(settings.API_MAX_BODY_BYTES) in error["message"]
    assert written() == before


def test_a_patch_over_the_api_limit_is_413(api_client, member, settings):
    settings.API_MAX_BODY_BYTES = 100
    response = api_client.patch(f"/api/v1/members/{member.pk}", {"first_name": "y" * 200}, format="json")
    assert_error(response, 413, "payload_too_large")
    member.refresh_from_db()
    assert member.first_name != "y" * 200


def test_djangos_own_upload_limit_is_a_413_too(api_client, member_with_points, settings):
    settings.API_MAX_BODY_BYTES = 10 * 1024 * 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    before = written()
    response = post(api_client, "/api/v1/activities", purchase(member_with_points, order_id="x" * 2000))
    assert_error(response, 413, "payload_too_large")
    assert written() == before


def test_a_body_within_the_limit_is_served(api_client, member_with_points, settings):
    settings.API_MAX_BODY_BYTES = 2000
    response = post(api_client, "/api/v1/activities", purchase(member_with_points, order_id="x" * 200))
    assert response.status_code == 201, response.content


# --------------------------------------------------------------------------------------------
# 400: JSON nested too deeply


@pytest.mark.parametrize("depth", [33, 2_000, 100_000], ids=["over-the-api-bound", "deep", "past-the-recursion-limit"])
def test_json_nested_too_deeply_is_400_and_writes_nothing(api_client, member_with_points, depth):
    before = written()
    nested = "[" * depth + "]" * depth
    body = f'{{"type": "purchase", "member_id": {member_with_points.pk}, "order_id": "D-1", "items": {nested}}}'
    response = api_client.post(
        "/api/v1/activities", body, content_type="application/json", headers={"Idempotency-Key": "deep"}
    )
    error = assert_error(response, 400, "parse_error")
    assert "nests deeper than 32 levels" in error["message"]
    assert written() == before


def test_json_nested_within_the_bound_reaches_validation(api_client, member_with_points):
    body = purchase(member_with_points, items=[[[[["a"]]]]])
    error = assert_error(post(api_client, "/api/v1/activities", body), 400, "invalid")
    assert "items" in error["details"]


# --------------------------------------------------------------------------------------------
# 400: a forged or garbled pagination cursor, on every list endpoint


def _cursor(raw):
    return base64.b64encode(raw.encode()).decode()


FORGED_CURSORS = {
    "not base64": "%%%not-base64%%%",
    "not a querystring": _cursor("garbage"),
    "empty": _cursor(""),
    "unknown token": _cursor("p=1&x=2"),
    "text position": _cursor("p=abc"),
    "huge position": _cursor("p=99999999999999999999999"),
    "nul position": _cursor("p=\x00"),
    "bad reverse flag": _cursor("r=x&p=1"),
    "bad offset": _cursor("o=minus&p=1"),
}


@pytest.fixture
def list_urls(member_with_points):
    program = member_with_points.program
    RewardFactory(program=program)
    TierFactory(program=program)
    return {
        "members search": f"/api/v1/members?external_id={member_with_points.external_id}",
        "member ledger": f"/api/v1/members/{member_with_points.pk}/ledger",
        "rewards": "/api/v1/rewards",
        "tiers": "/api/v1/tiers",
    }


@pytest.mark.parametrize("endpoint", ["members search", "member ledger", "rewards", "tiers"])
@pytest.mark.parametrize("cursor", FORGED_CURSORS.values(), ids=FORGED_CURSORS.keys())
def test_a_forged_cursor_is_400_on_every_list(api_client, list_urls, endpoint, cursor):
    url = list_urls[endpoint]
    response = api_client.get(url + ("&" if "?" in url else "?") + urlencode({"cursor": cursor}))
    error = assert_error(response, 400, "invalid")
    assert list(error["details"]) == ["cursor"]


@pytest.mark.parametrize("endpoint", ["member ledger", "rewards", "tiers"])
def test_the_next_link_of_a_page_still_works(api_client, list_urls, member_with_points, endpoint):
    program = member_with_points.program
    for points in (1, 2):
        points_earn(program=program, member_id=member_with_points.pk, points=points)
    RewardFactory(program=program)
    TierFactory(program=program)
    first = api_client.get(list_urls[endpoint], {"limit": 1})
    assert first.status_code == 200
    second = api_client.get(first.json()["next"])
    assert second.status_code == 200, second.content
    assert second.json()["results"] != first.json()["results"]


# --------------------------------------------------------------------------------------------
# 400: occurred_at outside the window around now


def _iso(moment):
    return moment.isoformat()


@pytest.mark.parametrize(
    "occurred_at",
    [
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00Z",
        "far past",
        "future beyond the skew",
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/activities", "/api/v1/activities/preview"])
def test_an_occurred_at_outside_the_window_is_400_and_writes_nothing(
    api_client, member_with_points, settings, path, occurred_at
):
    now = timezone.now()
    occurred_at = {
        "far past": _iso(now - dt.timedelta(days=settings.API_OCCURRED_AT_MAX_AGE_DAYS + 1)),
        "future beyond the skew": _iso(now + dt.timedelta(seconds=settings.API_CLOCK_SKEW_SECONDS + 60)),
    }.get(occurred_at, occurred_at)
    before = written()
    response = post(api_client, path, purchase(member_with_points, occurred_at=occurred_at))
    error = assert_error(response, 400, "invalid")
    assert list(error["details"]) == ["occurred_at"]
    assert written() == before


def test_the_occurred_at_messages_say_what_the_window_is(api_client, member_with_points, settings):
    future = post(api_client, "/api/v1/activities", purchase(member_with_points, occurred_at="9999-01-01T00:00:00Z"))
    assert "300 seconds ahead" in future.json()["error"]["details"]["occurred_at"][0]
    old = _iso(timezone.now() - dt.timedelta(days=settings.API_OCCURRED_AT_MAX_AGE_DAYS + 1))
    past = post(api_client, "/api/v1/activities", purchase(member_with_points, occurred_at=old), key="k2")
    assert f"last {settings.API_OCCURRED_AT_MAX_AGE_DAYS} days" in past.json()["error"]["details"]["occurred_at"][0]


def test_a_refund_dated_near_year_9999_is_400_and_writes_nothing(api_client, member_with_points):
    assert post(api_client, "/api/v1/activities", purchase(member_with_points)).status_code == 201
    before = written()
    body = {"order_id": "B-1", "amount": "1.00", "occurred_at": "9999-12-31T23:59:59Z"}
    error = assert_error(post(api_client, "/api/v1/refunds", body, key="refund"), 400, "invalid")
    assert list(error["details"]) == ["occurred_at"]
    assert written() == before


def test_an_occurred_at_within_the_window_is_accepted(api_client, member_with_points, settings):
    settings.API_CLOCK_SKEW_SECONDS = 600
    now = timezone.now()
    for key, moment in (
        ("slightly-ahead", now + dt.timedelta(seconds=60)),
        ("last-year", now - dt.timedelta(days=300)),
    ):
        body = purchase(member_with_points, order_id=key, occurred_at=_iso(moment))
        assert post(api_client, "/api/v1/activities", body, key=key).status_code == 201


def test_the_occurred_at_window_follows_the_settings(api_client, member_with_points, settings):
    settings.API_OCCURRED_AT_MAX_AGE_DAYS = 7
    body = purchase(member_with_points, occurred_at=_iso(timezone.now() - dt.timedelta(days=8)))
    assert_error(post(api_client, "/api/v1/activities", body), 400, "invalid")


# --------------------------------------------------------------------------------------------
# 400: too many items


def _items(count):
    return [{"sku": f"S{i}", "quantity": 1, "unit_price": "1.00"} for i in range(count)]


@pytest.mark.parametrize("path", ["/api/v1/activities", "/api/v1/activities/preview"])
def test_more_items_than_the_cap_is_400_and_writes_nothing(api_client, member_with_points, settings, path):
    before = written()
    body = purchase(member_with_points, items=_items(settings.API_MAX_ACTIVITY_ITEMS + 1))
    error = assert_error(post(api_client, path, body), 400, "invalid")
    assert list(error["details"]) == ["items"]
    assert str(settings.API_MAX_ACTIVITY_ITEMS) in json.dumps(error["details"])
    assert written() == before


def test_the_item_cap_follows_the_setting(api_client, member_with_points, settings):
    settings.API_MAX_ACTIVITY_ITEMS = 3
    refused = post(api_client, "/api/v1/activities", purchase(member_with_points, items=_items(4)))
    assert_error(refused, 400, "invalid")
    accepted = post(api_client, "/api/v1/activities", purchase(member_with_points, items=_items(3)), key="k2")
    assert accepted.status_code == 201, accepted.content


# --------------------------------------------------------------------------------------------
# 400: unknown fields, on every POST


@pytest.fixture
def other_member(program):
    from tests.loyalty.factories import MemberFactory

    return MemberFactory(program=program)


def _post_bodies(member, other_member, coupon, unassigned_card):
    """Every POST endpoint with a valid body."""
    return {
        "/api/v1/activities": purchase(member),
        "/api/v1/activities/preview": purchase(member),
        "/api/v1/refunds": {"order_id": "B-1", "amount": "1.00"},
        "/api/v1/members": {"external_id": "new-customer"},
        "/api/v1/adjustments": {"member_id": member.pk, "points": 5, "reason": "goodwill"},
        "/api/v1/transfers": {"from": {"member_id": member.pk}, "to": {"member_id": other_member.pk}, "points": 1},
        "/api/v1/redemptions": {"member_id": member.pk, "reward_id": coupon.reward_id},
        f"/api/v1/redemptions/{coupon.code}/use": {"order_id": "B-9"},
        f"/api/v1/redemptions/{coupon.code}/cancel": {"reason": "changed mind"},
        f"/api/v1/cards/{unassigned_card.number}/assign": {"member_id": member.pk},
    }


POST_PATHS = [
    "activities",
    "activities/preview",
    "refunds",
    "members",
    "adjustments",
    "transfers",
    "redemptions",
    "redemptions/{code}/use",
    "redemptions/{code}/cancel",
    "cards/{number}/assign",
]


@pytest.mark.parametrize("which", POST_PATHS)
def test_an_unknown_field_in_a_post_body_is_400_naming_it(
    program, member_with_points, other_member, coupon, unassigned_card, which
):
    client = client_with(make_key(program, scopes=["read", "write", "adjust"])[1])
    bodies = _post_bodies(member_with_points, other_member, coupon, unassigned_card)
    path = "/api/v1/" + which.format(code=coupon.code, number=unassigned_card.number)
    before = written()
    response = post(client, path, {**bodies[path], "colour": "red", "discount": 5})
    error = assert_error(response, 400, "invalid")
    assert error["details"]["colour"] == ["Unknown field: this operation does not take it."]
    assert "discount" in error["details"]
    assert "colour" in error["message"]
    assert written() == before


def test_unknown_fields_nested_in_a_body_are_named_where_they_are(api_client, member_with_points, other_member):
    before = written()
    body = {
        "from": {"member_id": member_with_points.pk, "nickname": "me"},
        "to": {"member_id": other_member.pk},
        "points": 1,
    }
    error = assert_error(post(api_client, "/api/v1/transfers", body), 400, "invalid")
    assert error["details"] == {"from": {"nickname": ["Unknown field: this operation does not take it."]}}
    items = [{"sku": "A", "unit_price": "1.00"}, {"sku": "B", "unit_price": "1.00", "colour": "red"}]
    error = assert_error(
        post(api_client, "/api/v1/activities", purchase(member_with_points, items=items), key="k2"), 400, "invalid"
    )
    assert error["details"] == {"items": {"1": {"colour": ["Unknown field: this operation does not take it."]}}}
    assert written() == before


def test_unknown_fields_are_reported_with_the_invalid_ones(api_client, member_with_points):
    body = {"type": "purchase", "member_id": member_with_points.pk, "amount": "-1", "colour": "red"}
    error = assert_error(post(api_client, "/api/v1/activities", body), 400, "invalid")
    assert {"colour", "amount"} <= set(error["details"])


# --------------------------------------------------------------------------------------------
# Member data in write answers only for a key with the read scope


@pytest.fixture
def writer(program):
    """A key that may write and adjust, but not read."""
    return client_with(make_key(program, scopes=["write", "adjust"])[1])


def test_a_write_only_key_gets_no_balance_from_an_activity(writer, api_client, member_with_points):
    body = post(writer, "/api/v1/activities", purchase(member_with_points)).json()
    assert "balance" not in body
    assert body["member_id"] == member_with_points.pk
    with_read = post(api_client, "/api/v1/activities", purchase(member_with_points, order_id="B-2"), key="k2").json()
    assert with_read["balance"]["available"] == 120


def test_a_write_only_key_gets_no_balance_from_a_refund(writer, member_with_points):
    assert post(writer, "/api/v1/activities", purchase(member_with_points)).status_code == 201
    response = post(writer, "/api/v1/refunds", {"order_id": "B-1", "amount": "1.00"}, key="k2")
    assert response.status_code == 201
    assert "balance" not in response.json()


def test_a_write_only_key_gets_no_balance_from_an_adjustment_or_a_transfer(writer, member_with_points, other_member):
    adjusted = post(writer, "/api/v1/adjustments", {"member_id": member_with_points.pk, "points": 5, "reason": "x"})
    assert adjusted.status_code == 201
    assert "balance" not in adjusted.json()
    body = {"from": {"member_id": member_with_points.pk}, "to": {"member_id": other_member.pk}, "points": 1}
    transferred = post(writer, "/api/v1/transfers", body, key="k2")
    assert transferred.status_code == 201
    assert not {"from_balance", "to_balance"} & set(transferred.json())
    assert transferred.json()["points"] == 1


def test_a_write_only_key_gets_no_balance_from_a_redemption(writer, coupon, member_with_points):
    points_earn(program=member_with_points.program, member_id=member_with_points.pk, points=500)
    body = {"member_id": member_with_points.pk, "reward_id": coupon.reward_id}
    response = post(writer, "/api/v1/redemptions", body)
    assert response.status_code == 201
    assert "balance" not in response.json()
    assert response.json()["code"]


def test_a_write_only_key_sees_only_the_ids_of_a_member_it_enrols_or_changes(writer, member, assert_matches_schema):
    enrolled = post(writer, "/api/v1/members", {"external_id": "cust-new", "email": "new@example.com"})
    assert enrolled.status_code == 201
    assert assert_matches_schema(enrolled, "/api/v1/members", "post").keys() == {"id", "external_id"}
    again = post(writer, "/api/v1/members", {"external_id": member.external_id}, key="k2")
    assert again.status_code == 200
    assert again.json() == {"id": member.pk, "external_id": member.external_id}
    changed = writer.patch(f"/api/v1/members/{member.pk}", {"first_name": "Ada"}, format="json")
    assert changed.status_code == 200
    assert assert_matches_schema(changed, "/api/v1/members/{id}", "patch") == {
        "id": member.pk,
        "external_id": member.external_id,
    }


def test_a_write_only_key_sees_only_the_id_of_the_member_it_assigns_a_card_to(writer, member, unassigned_card):
    response = post(writer, f"/api/v1/cards/{unassigned_card.number}/assign", {"member_id": member.pk})
    assert response.status_code == 200
    assert response.json()["member"] == {"id": member.pk, "external_id": member.external_id}


# --------------------------------------------------------------------------------------------
# Scope errors in words


@pytest.mark.parametrize(
    ("scopes", "method", "path", "missing"),
    [
        (["read", "write"], "post", "/api/v1/adjustments", "adjust"),
        (["read"], "post", "/api/v1/activities", "write"),
        (["write"], "get", "/api/v1/rewards", "read"),
    ],
)
def test_a_scope_error_names_the_missing_scope_in_words(program, scopes, method, path, missing):
    client = client_with(make_key(program, scopes=scopes)[1])
    response = getattr(client, method)(path, {}, format="json") if method == "post" else client.get(path)
    error = assert_error(response, 403, "insufficient_scope")
    assert error["message"].startswith(f"This API key lacks the '{missing}' scope; ")
    assert error["details"] == {"required_scope": missing, "key_scopes": scopes}


# --------------------------------------------------------------------------------------------
# The schema documents it


def test_the_schema_documents_413_on_every_operation_with_a_body(openapi_schema):
    for path, operations in openapi_schema["paths"].items():
        for method, operation in operations.items():
            if method in ("post", "patch"):
                assert "413" in operation["responses"], f"{method.upper()} {path}"
                assert "400" in operation["responses"], f"{method.upper()} {path}"


def test_the_schema_refuses_undeclared_properties_in_request_bodies(openapi_schema):
    requests = {
        name: schema for name, schema in openapi_schema["components"]["schemas"].items() if name.endswith("Request")
    }
    assert requests
    assert all(schema.get("additionalProperties") is False for schema in requests.values())


def test_the_schema_marks_member_data_of_write_answers_as_optional(openapi_schema):
    activity = openapi_schema["components"]["schemas"]["ActivityReport"]
    assert "balance" not in activity["required"]
    assert "member_id" in activity["required"]
