import datetime as dt

import pytest
from django.utils import timezone

from cards.models import Card
from loyalty.models import Activity, LedgerEntry, Member
from tests.api.conftest import client_with, make_key
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory

from .factories import EarningRuleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_client(program):
    return client_with(make_key(program)[1])


@pytest.fixture
def rules(program):
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None)
    EarningRuleFactory(program=program, name="Apparel bonus", kind="per_item", points=5, include_categories=["apparel"])


def purchase_body(**fields):
    body = {
        "type": "purchase",
        "order_id": "W-1",
        "amount": "42.50",
        "currency": "EUR",
        "channel": "online",
        "occurred_at": (timezone.now() - dt.timedelta(days=1)).isoformat(),
        "items": [
            {"sku": "TEE-1", "category": "apparel", "quantity": 2, "unit_price": "15.00"},
            {"sku": "MUG-1", "category": "home", "quantity": 1, "unit_price": "12.50"},
        ],
    }
    body.update(fields)
    return body


def post(client, path, body, key="key-1"):
    return client.post(path, body, format="json", headers={"Idempotency-Key": key} if key else {})


def test_purchase_through_the_api_then_the_balance_reads_back(api_client, program, member, rules):
    response = post(api_client, "/api/v1/activities", purchase_body(external_id=member.external_id))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["points_awarded"] == 52  # 42 + 2 x 5
    assert body["balance"]["available"] == 52
    assert sorted((e["reason"], e["points"]) for e in body["entries"]) == [
        ("Apparel bonus", 10),
        ("Points per euro", 42),
    ]
    assert Activity.objects.get(pk=body["activity_id"]).items[0]["unit_price"] == "15.00"
    card = CardFactory(member=member)
    looked_up = api_client.get(f"/api/v1/cards/{card.number}").json()
    assert looked_up["member"]["balance"]["available"] == 52


def test_purchase_on_an_unassigned_card_enrols_an_anonymous_member(api_client, program, rules):
    card = CardFactory(program=program)
    response = post(api_client, "/api/v1/activities", purchase_body(card_number=card.number, items=[]))
    assert response.status_code == 201, response.json()
    card.refresh_from_db()
    assert card.status == Card.Status.ACTIVE
    member = Member.objects.get(pk=card.member_id)
    assert member.enrollment_channel == Member.Channel.CARD
    assert response.json()["member_id"] == member.pk
    assert member.available == 42


def test_replay_of_a_report_returns_the_first_response_and_posts_nothing(api_client, member, rules):
    body = purchase_body(member_id=member.pk)
    first = post(api_client, "/api/v1/activities", body)
    again = post(api_client, "/api/v1/activities", body)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert LedgerEntry.objects.count() == 2
    conflict = post(api_client, "/api/v1/activities", {**body, "amount": "1.00"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"


def test_report_needs_an_idempotency_key(api_client, member, rules):
    response = post(api_client, "/api/v1/activities", purchase_body(member_id=member.pk), key=None)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_required"


def test_invalid_input_names_the_fields(api_client, member):
    response = post(
        api_client,
        "/api/v1/activities",
        {"type": "purchase", "member_id": member.pk, "items": [{"quantity": 0}], "currency": "USD"},
    )
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert "items" in details


def test_purchase_needs_an_order_id_and_an_amount(api_client, member):
    response = post(api_client, "/api/v1/activities", {"type": "purchase", "member_id": member.pk})
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"order_id", "amount"}


def test_unknown_member_is_404_and_blocked_member_is_422(api_client, program, other_program_member, rules):
    response = post(api_client, "/api/v1/activities", purchase_body(member_id=other_program_member.pk))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "member_not_found"
    blocked = MemberFactory(program=program, status="blocked")
    response = post(api_client, "/api/v1/activities", purchase_body(member_id=blocked.pk), key="key-2")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "member_blocked"
    assert not Activity.objects.exists()


def test_signup_activity_earns_by_its_rule(api_client, program, member):
    EarningRuleFactory(program=program, name="Welcome", trigger="signup", points=100)
    response = post(api_client, "/api/v1/activities", {"type": "signup", "member_id": member.pk})
    assert response.status_code == 201, response.json()
    assert response.json()["points_awarded"] == 100


def test_refund_reverses_in_proportion(api_client, member, rules):
    post(api_client, "/api/v1/activities", purchase_body(member_id=member.pk, amount="100.00", items=[]))
    response = post(api_client, "/api/v1/refunds", {"order_id": "W-1", "amount": "25.00"}, key="refund-1")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert [e["points"] for e in body["entries"]] == [-25]
    assert body["balance"]["available"] == 75
    too_much = post(api_client, "/api/v1/refunds", {"order_id": "W-1", "amount": "80.00"}, key="refund-2")
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "refund_exceeds_order"
    unknown = post(api_client, "/api/v1/refunds", {"order_id": "nope", "amount": "1.00"}, key="refund-3")
    assert unknown.status_code == 404


def test_preview_returns_the_points_and_posts_nothing(api_client, member, rules):
    response = post(api_client, "/api/v1/activities/preview", purchase_body(member_id=member.pk), key=None)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["points"] == 52
    assert {a["rule"] for a in body["awards"]} == {"Points per euro", "Apparel bonus"}
    assert not Activity.objects.exists()
    assert not LedgerEntry.objects.exists()


def test_schema_documents_the_activity_endpoints(api_client):
    from django.test import Client

    schema = Client().get("/api/schema/?format=json").json()
    assert {"/api/v1/activities", "/api/v1/activities/preview", "/api/v1/refunds"} <= set(schema["paths"])


def test_purchase_on_a_blocked_card_is_refused(api_client, program, member, rules):
    card = CardFactory(member=member, blocked=True)
    response = post(api_client, "/api/v1/activities", purchase_body(card_number=card.number))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "card_blocked"
    assert not Activity.objects.exists()


def test_a_review_on_an_unassigned_card_enrols_nobody(api_client, program):
    card = CardFactory(program=program)
    response = post(api_client, "/api/v1/activities", {"type": "review", "card_number": card.number})
    assert response.status_code == 404
    assert not Member.objects.exists()


def test_the_same_order_reported_twice_with_another_key_is_409(api_client, member, rules):
    post(api_client, "/api/v1/activities", purchase_body(member_id=member.pk), key="a")
    response = post(api_client, "/api/v1/activities", purchase_body(member_id=member.pk), key="b")
    assert response.status_code == 409
    assert LedgerEntry.objects.count() == 2
