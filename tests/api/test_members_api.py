"""The member endpoints (docs/api.md): enrol, read, find, change, and the member's ledger. Every
successful response and every error is checked against the OpenAPI schema."""

import base64
import datetime as dt
import time
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cards.models import Card
from loyalty.models import LedgerEntry, Member
from loyalty.services import points_earn, points_redeem
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory
from tests.tiers.factories import TierFactory
from tests.workflows.factories import EarningRuleFactory
from tiers.models import MemberTier

from .conftest import client_with, make_key, wrong_check_digit

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/members"
MEMBER = "/api/v1/members/{id}"
LEDGER = "/api/v1/members/{id}/ledger"
ACTIVITIES = "/api/v1/activities"


def member_url(member_id):
    return MEMBER.format(id=member_id)


def ledger_url(member_id):
    return LEDGER.format(id=member_id)


def enrol(client, body, key=None):
    return client.post(MEMBERS, body, format="json", headers={"Idempotency-Key": key} if key else {})


def error_of(response):
    return response.json()["error"]


@pytest.fixture
def enrol_body():
    return {
        "external_id": "shop-42",
        "email": "Grace.Hopper@Example.com",
        "first_name": "Grace",
        "last_name": "Hopper",
        "birthday": "1990-12-09",
        "email_consent": True,
    }


@pytest.fixture
def referrer(program):
    return MemberFactory(program=program, referral_code="FRIEND42")


@pytest.fixture
def member_with_history(member):
    """A member with a tier, three cards and 30 ledger entries (earns and redemptions)."""
    gold = TierFactory(program=member.program, name="Gold", position=1, threshold=Decimal("0"))
    TierFactory(program=member.program, name="Platinum", position=2, threshold=Decimal("100000"))
    MemberTier.objects.create(member=member, tier=gold, since=timezone.now())
    for _ in range(3):
        CardFactory(member=member)
    for n in range(20):
        points_earn(program=member.program, member_id=member.pk, points=10 + n, reason=f"earn {n}")
    for _ in range(10):
        points_redeem(program=member.program, member_id=member.pk, points=5, reason="coupon")
    return member


# --------------------------------------------------------------------------------------------
# POST /members


def test_enrol_creates_a_member_with_a_digital_card(api_client, program, enrol_body, assert_matches_schema):
    response = enrol(api_client, enrol_body)
    assert response.status_code == 201, response.json()
    body = assert_matches_schema(response, MEMBERS, "post")
    member = Member.objects.get(program=program, external_id="shop-42")
    assert body["id"] == member.pk
    assert body["email"] == "grace.hopper@example.com"
    assert (body["first_name"], body["last_name"], body["birthday"]) == ("Grace", "Hopper", "1990-12-09")
    assert body["email_consent"] is True
    assert body["status"] == "active"
    assert body["enrollment_channel"] == "api"
    assert body["referral_code"] == member.referral_code
    assert body["balance"] == {"available": 0, "pending": 0, "lifetime_earned": 0, "redeemed": 0, "expired": 0}
    assert body["tier"] is None
    assert body["next_tier"] is None  # the program has no tiers
    card = Card.objects.get(member=member)
    assert body["cards"] == [{"number": card.number, "status": "active", "kind": "digital"}]


def test_the_cards_receiver_issues_no_second_digital_card(
    api_client, program, enrol_body, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = enrol(api_client, enrol_body)
    assert response.status_code == 201
    assert Card.objects.filter(member_id=response.json()["id"]).count() == 1


def test_enrolling_an_enrolled_external_id_returns_that_member_unchanged(
    api_client, member, assert_matches_schema, unassigned_card
):
    response = enrol(
        api_client,
        {"external_id": member.external_id, "first_name": "Changed", "card_number": unassigned_card.number},
    )
    assert response.status_code == 200
    body = assert_matches_schema(response, MEMBERS, "post")
    assert body["id"] == member.pk
    assert body["first_name"] == member.first_name
    assert Member.objects.filter(program=member.program).count() == 1
    unassigned_card.refresh_from_db()
    assert unassigned_card.status == Card.Status.UNASSIGNED  # nothing changed, the card included


def test_enrol_assigns_the_given_card_instead_of_a_digital_one(api_client, unassigned_card, enrol_body):
    n = unassigned_card.number
    response = enrol(api_client, {**enrol_body, "card_number": f"{n[:4]} {n[4:8]}-{n[8:]}"})
    assert response.status_code == 201
    assert response.json()["cards"] == [{"number": n, "status": "active", "kind": "physical"}]
    unassigned_card.refresh_from_db()
    assert unassigned_card.member_id == response.json()["id"]


@pytest.mark.parametrize("idempotency_key", [None, "enrol-1"])
@pytest.mark.parametrize("card_fixture", ["active_card", "blocked_card"])
def test_enrol_with_a_card_in_use_is_422_and_enrols_nobody(
    request, api_client, program, enrol_body, card_fixture, idempotency_key, assert_matches_schema
):
    card = request.getfixturevalue(card_fixture)
    members_before = Member.objects.count()
    response = enrol(api_client, {**enrol_body, "card_number": card.number}, key=idempotency_key)
    assert response.status_code == 422
    error = assert_matches_schema(response, MEMBERS, "post")["error"]
    assert error["code"] == "card_not_assignable"
    assert error["details"]["status"] == card.status
    assert Member.objects.count() == members_before
    assert not Member.objects.filter(external_id="shop-42").exists()


@pytest.mark.parametrize("whose", ["unknown", "other program"])
def test_enrol_with_a_card_not_of_this_program_is_404_and_enrols_nobody(
    api_client, program, other_program_card, enrol_body, whose, assert_matches_schema
):
    number = other_program_card.number if whose == "other program" else CardFactory.build(program=program).number
    response = enrol(api_client, {**enrol_body, "card_number": number})
    assert response.status_code == 404
    assert assert_matches_schema(response, MEMBERS, "post")["error"]["code"] == "card_not_found"
    assert not Member.objects.filter(external_id="shop-42").exists()
    other_program_card.refresh_from_db()
    assert other_program_card.status == Card.Status.UNASSIGNED


def test_enrol_with_a_mistyped_card_number_is_400(api_client, unassigned_card, enrol_body):
    response = enrol(api_client, {**enrol_body, "card_number": wrong_check_digit(unassigned_card.number)})
    assert response.status_code == 400
    assert set(error_of(response)["details"]) == {"card_number"}


def test_enrol_with_a_referral_code_records_the_referrer(api_client, referrer, enrol_body):
    response = enrol(api_client, {**enrol_body, "referral_code": " friend42 "})
    assert response.status_code == 201
    assert Member.objects.get(pk=response.json()["id"]).referred_by_id == referrer.pk


def test_the_referral_is_handed_to_the_workflows_receiver_after_the_commit(
    api_client, referrer, enrol_body, django_capture_on_commit_callbacks, monkeypatch
):
    calls = []
    monkeypatch.setattr(
        "workflows.referrals.referral_create", lambda **kwargs: calls.append((kwargs["friend"], kwargs["referrer"]))
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = enrol(api_client, {**enrol_body, "referral_code": "FRIEND42"})
    assert response.status_code == 201
    assert [(friend.pk, who.pk) for friend, who in calls] == [(response.json()["id"], referrer.pk)]


@pytest.mark.parametrize("whose", ["unknown", "other program"])
def test_enrol_with_a_referral_code_not_of_this_program_is_400_naming_the_field(
    api_client, other_program, enrol_body, whose, assert_matches_schema
):
    MemberFactory(program=other_program, referral_code="ELSEWHERE")
    code = "ELSEWHERE" if whose == "other program" else "NOSUCHCODE"
    response = enrol(api_client, {**enrol_body, "referral_code": code})
    assert response.status_code == 400
    error = assert_matches_schema(response, MEMBERS, "post")["error"]
    assert error["code"] == "invalid"
    assert set(error["details"]) == {"referral_code"}
    assert not Member.objects.filter(external_id="shop-42").exists()


def test_enrol_names_each_invalid_field(api_client, assert_matches_schema):
    tomorrow = (timezone.localdate() + dt.timedelta(days=1)).isoformat()
    response = enrol(
        api_client, {"external_id": "", "email": "not-an-email", "birthday": tomorrow, "email_consent": "maybe"}
    )
    assert response.status_code == 400
    error = assert_matches_schema(response, MEMBERS, "post")["error"]
    assert set(error["details"]) == {"external_id", "email", "birthday", "email_consent"}


def test_enrol_replays_the_first_response_for_the_same_idempotency_key(api_client, enrol_body):
    first = enrol(api_client, enrol_body, key="enrol-1")
    again = enrol(api_client, enrol_body, key="enrol-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Member.objects.filter(external_id="shop-42").count() == 1


def test_enrol_with_a_reused_idempotency_key_and_another_body_is_409(api_client, enrol_body, assert_matches_schema):
    assert enrol(api_client, enrol_body, key="enrol-1").status_code == 201
    response = enrol(api_client, {**enrol_body, "external_id": "shop-43"}, key="enrol-1")
    assert response.status_code == 409
    assert assert_matches_schema(response, MEMBERS, "post")["error"]["code"] == "idempotency_conflict"
    assert not Member.objects.filter(external_id="shop-43").exists()


def test_enrol_needs_the_write_scope(read_only_client, enrol_body, assert_matches_schema):
    response = enrol(read_only_client, enrol_body)
    assert response.status_code == 403
    assert assert_matches_schema(response, MEMBERS, "post")["error"]["code"] == "insufficient_scope"
    assert not Member.objects.exists()


# --------------------------------------------------------------------------------------------
# Authentication on every operation


OPERATIONS = [
    ("post", MEMBERS, lambda m: MEMBERS),
    ("get", MEMBERS, lambda m: f"{MEMBERS}?external_id={m.external_id}"),
    ("get", MEMBER, lambda m: member_url(m.pk)),
    ("patch", MEMBER, lambda m: member_url(m.pk)),
    ("get", LEDGER, lambda m: ledger_url(m.pk)),
]


@pytest.mark.parametrize(("method", "path", "url"), OPERATIONS)
def test_every_operation_without_a_key_is_401(anonymous_client, member, method, path, url, assert_matches_schema):
    response = getattr(anonymous_client, method)(url(member), {}, format="json")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Api-Key"
    assert assert_matches_schema(response, path, method)["error"]["code"] in {"not_authenticated", "invalid_api_key"}


@pytest.mark.parametrize(("method", "path", "url"), OPERATIONS)
def test_every_operation_needs_its_scope(
    read_only_client, write_only_client, member, method, path, url, assert_matches_schema
):
    client = write_only_client if method == "get" else read_only_client
    response = getattr(client, method)(url(member), {}, format="json")
    assert response.status_code == 403
    error = assert_matches_schema(response, path, method)["error"]
    assert error["code"] == "insufficient_scope"
    assert error["details"]["required_scope"] == ("read" if method == "get" else "write")


EXPECTED_ERRORS = {
    (MEMBERS, "post"): {"400", "401", "403", "404", "409", "413", "422", "429"},
    (MEMBERS, "get"): {"400", "401", "403", "429"},
    (MEMBER, "get"): {"401", "403", "404", "429"},
    (MEMBER, "patch"): {"400", "401", "403", "404", "409", "413", "429"},
    (LEDGER, "get"): {"400", "401", "403", "404", "429"},
}


@pytest.mark.parametrize(("path", "method"), EXPECTED_ERRORS)
def test_each_member_operation_is_secured_and_documents_its_errors(openapi_schema, path, method):
    operation = openapi_schema["paths"][path][method]
    assert operation["security"] == [{"ApiKeyAuth": []}]
    errors = {status for status in operation["responses"] if status >= "400"}
    assert errors == EXPECTED_ERRORS[path, method]
    for status in errors:
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}


def test_the_member_schema_has_the_fields_of_api_md(openapi_schema):
    schemas = openapi_schema["components"]["schemas"]
    assert {
        "id", "external_id", "email", "first_name", "last_name", "birthday", "status", "email_consent",
        "enrolled_at", "balance", "tier", "next_tier", "cards", "referral_code",
    } <= set(schemas["Member"]["properties"])  # fmt: skip
    assert set(schemas["MemberTier"]["properties"]) == {"id", "name", "multiplier", "since"}
    assert set(schemas["MemberNextTier"]["properties"]) == {"id", "name", "threshold", "metric", "current", "needed"}
    assert set(schemas["MemberCard"]["properties"]) == {"number", "status", "kind"}
    assert {
        "id", "kind", "points", "created_at", "available_at", "expires_at", "remaining", "reason", "reference",
    } <= set(schemas["MemberLedger"]["properties"])  # fmt: skip


# --------------------------------------------------------------------------------------------
# GET /members/{id}


def test_get_member_shows_profile_balance_tier_and_cards(api_client, member_with_history, assert_matches_schema):
    member = member_with_history
    member.refresh_from_db()
    response = api_client.get(member_url(member.pk))
    assert response.status_code == 200
    body = assert_matches_schema(response, MEMBER, "get")
    assert body["id"] == member.pk
    assert body["external_id"] == member.external_id
    assert body["balance"] == {
        "available": member.available,
        "pending": 0,
        "lifetime_earned": sum(range(10, 30)),
        "redeemed": 50,
        "expired": 0,
    }
    assert body["tier"]["name"] == "Gold"
    assert body["tier"]["multiplier"] == "1.000"
    assert body["next_tier"]["name"] == "Platinum"
    assert body["next_tier"]["metric"] == "points_earned"
    assert Decimal(body["next_tier"]["current"]) == sum(range(10, 30))
    assert Decimal(body["next_tier"]["needed"]) == 100000 - sum(range(10, 30))
    numbers = list(Card.objects.filter(member=member).order_by("-id").values_list("number", flat=True))
    assert [c["number"] for c in body["cards"]] == numbers


def test_get_member_costs_the_same_queries_whatever_its_history(
    api_client, member, member_with_history, program, django_assert_max_num_queries
):
    bare = MemberFactory(program=program)
    # API key, member, tier state, tier metric, next tier, cards.
    for someone in (bare, member_with_history):
        with django_assert_max_num_queries(6):
            assert api_client.get(member_url(someone.pk)).status_code == 200


@pytest.mark.parametrize("member_id", ["other program", 999_999_999, 2**70])
def test_get_a_member_not_of_this_program_is_404(api_client, other_program_member, member_id, assert_matches_schema):
    member_id = other_program_member.pk if member_id == "other program" else member_id
    response = api_client.get(member_url(member_id))
    assert response.status_code == 404
    assert assert_matches_schema(response, MEMBER, "get")["error"]["code"] == "member_not_found"


def test_another_programs_key_never_sees_the_member(other_program_client, member, active_card):
    assert other_program_client.get(member_url(member.pk)).status_code == 404
    assert other_program_client.get(ledger_url(member.pk)).status_code == 404
    for query in (
        {"external_id": member.external_id},
        {"email": member.email},
        {"card_number": active_card.number},
    ):
        response = other_program_client.get(MEMBERS, query)
        assert response.status_code == 200
        assert response.json() == {"results": [], "next": None}


# --------------------------------------------------------------------------------------------
# GET /members?...


@pytest.mark.parametrize("field", ["external_id", "email", "card_number"])
def test_find_a_member_by_each_filter(api_client, program, active_card, field, assert_matches_schema):
    member = active_card.member
    MemberFactory(program=program)  # someone else
    value = {"external_id": member.external_id, "email": member.email.upper(), "card_number": active_card.number}
    response = api_client.get(MEMBERS, {field: value[field]})
    assert response.status_code == 200
    body = assert_matches_schema(response, MEMBERS, "get")
    assert [m["id"] for m in body["results"]] == [member.pk]
    assert body["next"] is None
    found = body["results"][0]
    assert found["cards"] == [{"number": active_card.number, "status": "active", "kind": "physical"}]
    assert found["balance"]["available"] == 120
    assert "next_tier" not in found


def test_find_by_a_blocked_card_still_finds_its_member(api_client, blocked_card):
    response = api_client.get(MEMBERS, {"card_number": blocked_card.number})
    assert [m["id"] for m in response.json()["results"]] == [blocked_card.member_id]


def test_find_shows_the_members_tier(api_client, member_with_history):
    body = api_client.get(MEMBERS, {"external_id": member_with_history.external_id}).json()
    assert body["results"][0]["tier"]["name"] == "Gold"


def test_find_combines_filters(api_client, program):
    a = MemberFactory(program=program, email="same@example.com")
    b = MemberFactory(program=program)
    response = api_client.get(MEMBERS, {"email": "same@example.com", "external_id": b.external_id})
    assert response.json()["results"] == []
    response = api_client.get(MEMBERS, {"email": "SAME@example.com", "external_id": a.external_id})
    assert [m["id"] for m in response.json()["results"]] == [a.pk]


def test_find_pages_by_cursor_newest_first(api_client, program, django_assert_max_num_queries):
    # Every filter names at most one member (emails are unique in a program), except a card
    # number... which names one member too: a page of one, with no next page.
    member = MemberFactory(program=program, email="family@example.com")
    CardFactory(member=member)
    with django_assert_max_num_queries(3):  # key, the page, the page's cards
        body = api_client.get(f"{MEMBERS}?email=family@example.com&limit=2").json()
    assert [m["id"] for m in body["results"]] == [member.pk]
    assert body["next"] is None


def test_find_needs_a_filter(api_client, member, assert_matches_schema):
    response = api_client.get(MEMBERS, {"external_id": "", "limit": 5})
    assert response.status_code == 400
    error = assert_matches_schema(response, MEMBERS, "get")["error"]
    assert set(error["details"]) == {"external_id", "email", "card_number"}


def test_find_with_a_mistyped_card_number_is_400(api_client, active_card, assert_matches_schema):
    response = api_client.get(MEMBERS, {"card_number": wrong_check_digit(active_card.number)})
    assert response.status_code == 400
    assert set(assert_matches_schema(response, MEMBERS, "get")["error"]["details"]) == {"card_number"}


# --------------------------------------------------------------------------------------------
# PATCH /members/{id}


def test_patch_changes_only_the_given_fields(api_client, member, assert_matches_schema):
    response = api_client.patch(
        member_url(member.pk),
        {"email": "NEW@Example.com", "last_name": "Lovelace", "birthday": None, "email_consent": True},
        format="json",
    )
    assert response.status_code == 200
    body = assert_matches_schema(response, MEMBER, "patch")
    assert (body["email"], body["last_name"], body["birthday"], body["email_consent"]) == (
        "new@example.com",
        "Lovelace",
        None,
        True,
    )
    member.refresh_from_db()
    assert (member.email, member.last_name, member.first_name) == ("new@example.com", "Lovelace", "Ada")


@pytest.mark.parametrize("field", ["nickname", "balance", "referral_code", "id"])
def test_patch_refuses_an_unknown_field(api_client, member, field, assert_matches_schema):
    response = api_client.patch(member_url(member.pk), {field: "x", "first_name": "Eve"}, format="json")
    assert response.status_code == 400
    error = assert_matches_schema(response, MEMBER, "patch")["error"]
    assert set(error["details"]) == {field}
    member.refresh_from_db()
    assert member.first_name == "Ada"


def test_patch_names_each_invalid_and_unknown_field(api_client, member, assert_matches_schema):
    response = api_client.patch(
        member_url(member.pk), {"status": "deleted", "email": "nope", "tier": "Gold"}, format="json"
    )
    assert response.status_code == 400
    assert set(assert_matches_schema(response, MEMBER, "patch")["error"]["details"]) == {"status", "email", "tier"}


def test_patch_with_a_body_that_is_not_an_object_is_400(api_client, member):
    response = api_client.patch(member_url(member.pk), ["status"], format="json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"


def test_patch_to_another_members_external_id_is_409_and_changes_nothing(
    api_client, program, member, assert_matches_schema
):
    other = MemberFactory(program=program)
    response = api_client.patch(
        member_url(member.pk), {"external_id": other.external_id, "status": "blocked"}, format="json"
    )
    assert response.status_code == 409
    assert assert_matches_schema(response, MEMBER, "patch")["error"]["code"] == "conflict"
    member.refresh_from_db()
    assert member.status == "active"


def test_patch_a_member_of_another_program_is_404(api_client, other_program_member, assert_matches_schema):
    response = api_client.patch(member_url(other_program_member.pk), {"status": "blocked"}, format="json")
    assert response.status_code == 404
    assert assert_matches_schema(response, MEMBER, "patch")["error"]["code"] == "member_not_found"
    other_program_member.refresh_from_db()
    assert other_program_member.status == "active"


def test_a_blocked_member_cannot_earn_until_unblocked(api_client, program, member, assert_matches_schema):
    EarningRuleFactory(program=program, trigger="review", points=10)
    response = api_client.patch(member_url(member.pk), {"status": "blocked"}, format="json")
    assert response.status_code == 200
    assert assert_matches_schema(response, MEMBER, "patch")["status"] == "blocked"

    review = {"type": "review", "member_id": member.pk}
    refused = api_client.post(ACTIVITIES, review, format="json", headers={"Idempotency-Key": "review-1"})
    assert refused.status_code == 422
    assert assert_matches_schema(refused, ACTIVITIES, "post")["error"]["code"] == "member_blocked"

    assert api_client.patch(member_url(member.pk), {"status": "active"}, format="json").status_code == 200
    accepted = api_client.post(ACTIVITIES, review, format="json", headers={"Idempotency-Key": "review-2"})
    assert accepted.status_code == 201
    assert accepted.json()["points_awarded"] == 10


# --------------------------------------------------------------------------------------------
# GET /members/{id}/ledger


def test_the_ledger_lists_entries_newest_first(api_client, member_with_history, assert_matches_schema):
    response = api_client.get(ledger_url(member_with_history.pk), {"limit": 3})
    assert response.status_code == 200
    body = assert_matches_schema(response, LEDGER, "get")
    newest = list(LedgerEntry.objects.filter(member=member_with_history).order_by("-id")[:3])
    assert [e["id"] for e in body["results"]] == [e.pk for e in newest]
    first = body["results"][0]
    assert first["kind"] == "redeem"
    assert first["points"] == -5
    assert first["reason"] == "coupon"
    assert first["available_at"] is None
    assert set(first) >= {"created_at", "available_at", "expires_at", "remaining", "reason", "reference"}
    assert body["next"]


def test_the_ledger_pages_cover_every_entry_once(api_client, member_with_history, django_assert_max_num_queries):
    seen, url = [], ledger_url(member_with_history.pk) + "?limit=7"
    while url:
        with django_assert_max_num_queries(3):  # key, member, the page
            body = api_client.get(url).json()
        seen += [e["id"] for e in body["results"]]
        url = body["next"]
    assert seen == list(
        LedgerEntry.objects.filter(member=member_with_history).order_by("-id").values_list("id", flat=True)
    )


def test_the_ledger_of_a_member_of_another_program_is_404(api_client, other_program_member, assert_matches_schema):
    points_earn(program=other_program_member.program, member_id=other_program_member.pk, points=5)
    response = api_client.get(ledger_url(other_program_member.pk))
    assert response.status_code == 404
    assert assert_matches_schema(response, LEDGER, "get")["error"]["code"] == "member_not_found"


def test_a_tampered_ledger_cursor_is_400(api_client, member_with_history, assert_matches_schema):
    response = api_client.get(ledger_url(member_with_history.pk), {"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert set(assert_matches_schema(response, LEDGER, "get")["error"]["details"]) == {"cursor"}


def _cursor_before(entry_id):
    """DRF's cursor for the page of entries below `entry_id` (what a client reaches by paging)."""
    return base64.b64encode(urlencode({"p": str(entry_id)}).encode()).decode()


def _explain(sql):
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_ledger_pages_of_a_member_with_100k_entries_are_index_scans(api_client, program, member):
    """The member's 100,000 entries, then 300,000 newer ones of another member: the first page
    must not walk through the newer entries, and a deep page must not sort or scan."""
    other = MemberFactory(program=program)
    now = timezone.now()
    with connection.cursor() as cursor:
        for member_id, count in ((member.pk, 100_000), (other.pk, 300_000)):
            cursor.execute(
                f"""
                INSERT INTO {LedgerEntry._meta.db_table}
                    (program_id, member_id, kind, points, remaining, created_at, occurred_at, available_at,
                     released_at, reason, reference)
                SELECT %s, %s, 'earn', 1, 1, %s, %s, %s, %s, 'bulk', '' FROM generate_series(1, %s)
                """,
                [program.pk, member_id, now, now, now, now, count],
            )
        cursor.execute(f"ANALYZE {LedgerEntry._meta.db_table}")
    ids = list(LedgerEntry.objects.filter(member=member).order_by("-id").values_list("id", flat=True))
    middle = len(ids) // 2

    for params, expected in (
        ({"limit": 50}, ids[:50]),
        ({"cursor": _cursor_before(ids[middle]), "limit": 200}, ids[middle + 1 : middle + 201]),
    ):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = api_client.get(ledger_url(member.pk), params)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200
        assert [e["id"] for e in response.json()["results"]] == expected
        assert elapsed < 0.5
        plan = _explain(next(q["sql"] for q in queries.captured_queries if "loyalty_ledgerentry" in q["sql"]))
        assert "Index Scan" in plan, plan
        assert "Seq Scan" not in plan, plan
        assert "Sort" not in plan, plan
        if "cursor" not in params:
            assert "entry_member_recent" in plan, plan


# --------------------------------------------------------------------------------------------
# POST /activities refuses birthdays


def test_reporting_a_birthday_is_refused_because_the_job_awards_it(api_client, member, assert_matches_schema):
    response = api_client.post(
        ACTIVITIES,
        {"type": "birthday", "member_id": member.pk},
        format="json",
        headers={"Idempotency-Key": "bday-1"},
    )
    assert response.status_code == 400
    error = assert_matches_schema(response, ACTIVITIES, "post")["error"]
    assert set(error["details"]) == {"type"}
    assert "award_birthdays" in error["details"]["type"][0]
    assert not LedgerEntry.objects.filter(member=member).exists()


def test_the_schema_documents_that_birthdays_are_not_reported(openapi_schema):
    request = openapi_schema["components"]["schemas"]["ActivityReportRequest"]
    assert "award_birthdays" in request["properties"]["type"]["description"]


# --------------------------------------------------------------------------------------------
# End to end: a purchase through the API crosses a tier threshold


def test_a_purchase_through_the_api_upgrades_the_member_and_reads_back_tier_and_balance(
    program, api_client, assert_matches_schema
):
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None)
    TierFactory(program=program, name="Silver", position=1, threshold=Decimal("100"), multiplier=Decimal("1.5"))
    TierFactory(program=program, name="Gold", position=2, threshold=Decimal("500"), multiplier=Decimal("2"))

    enrolled = enrol(api_client, {"external_id": "shop-7", "email": "ada@example.com"})
    assert enrolled.status_code == 201
    member_id = enrolled.json()["id"]

    def buy(order_id, amount):
        response = api_client.post(
            ACTIVITIES,
            {"type": "purchase", "member_id": member_id, "order_id": order_id, "amount": amount, "currency": "EUR"},
            format="json",
            headers={"Idempotency-Key": order_id},
        )
        assert response.status_code == 201, response.json()
        return response.json()["points_awarded"]

    def read():
        response = api_client.get(member_url(member_id))
        assert response.status_code == 200
        return assert_matches_schema(response, MEMBER, "get")

    start = read()
    assert start["tier"] is None
    assert start["next_tier"]["name"] == "Silver"
    assert Decimal(start["next_tier"]["needed"]) == 100

    awarded = [buy("O-1", "60.00")]
    below = read()
    assert below["tier"] is None
    assert below["next_tier"]["name"] == "Silver"
    assert Decimal(below["next_tier"]["current"]) == 60
    assert Decimal(below["next_tier"]["needed"]) == 40
    assert below["balance"]["available"] == 60

    before_upgrade = timezone.now()
    awarded.append(buy("O-2", "50.00"))  # 110 points earned: Silver
    silver = read()
    assert silver["tier"]["name"] == "Silver"
    assert silver["tier"]["multiplier"] == "1.500"
    assert dt.datetime.fromisoformat(silver["tier"]["since"]) >= before_upgrade - dt.timedelta(seconds=1)
    assert silver["next_tier"] == {
        "id": silver["next_tier"]["id"],
        "name": "Gold",
        "threshold": "500.00",
        "metric": "points_earned",
        "current": "110.00",
        "needed": "390.00",
    }
    assert silver["balance"]["available"] == sum(awarded) == 110

    awarded.append(buy("O-3", "100.00"))  # earns at Silver's multiplier
    assert awarded[-1] == 150
    after = read()
    assert after["tier"]["name"] == "Silver"
    assert Decimal(after["next_tier"]["needed"]) == 500 - 260
    assert after["balance"]["available"] == after["balance"]["lifetime_earned"] == sum(awarded)

    found = api_client.get(MEMBERS, {"external_id": "shop-7"}).json()["results"]
    assert found[0]["tier"] == after["tier"]


def test_a_key_of_another_program_cannot_enrol_into_this_one(other_program_client, program, enrol_body):
    response = enrol(other_program_client, enrol_body)
    assert response.status_code == 201
    assert Member.objects.get(pk=response.json()["id"]).program_id != program.pk


def test_a_revoked_key_cannot_read_members(revoked_key, member):
    response = client_with(revoked_key).get(member_url(member.pk))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


def test_an_adjust_only_key_cannot_enrol(program, enrol_body):
    client = client_with(make_key(program, scopes=["adjust"])[1])
    assert enrol(client, enrol_body).status_code == 403
