"""The reward and redemption endpoints (docs/api.md) through HTTP with API keys."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from loyalty import services as ledger
from rewards.models import Redemption, Reward
from tests.api.conftest import client_with, make_key
from tests.loyalty.factories import MemberFactory, ProgramFactory

from .factories import RewardFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def program(db):
    return ProgramFactory(min_redemption=0)


@pytest.fixture
def client(program):
    return client_with(make_key(program)[1])


@pytest.fixture
def member(program):
    m = MemberFactory(program=program)
    ledger.points_earn(program=program, member_id=m.pk, points=1000)
    return m


def post(client, path, body, key=None):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def test_catalog_lists_active_rewards_with_availability(client, program):
    RewardFactory(program=program, name="Coffee", position=1, stock=1, cost_points=100)
    RewardFactory(program=program, name="Hidden", is_active=False)
    RewardFactory(program=program, name="Later", starts_at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC))
    RewardFactory(name="Other program")
    response = client.get("/api/v1/rewards")
    assert response.status_code == 200
    (coffee,) = response.json()["results"]
    assert (coffee["name"], coffee["cost_points"], coffee["available"], coffee["stock_left"]) == (
        "Coffee",
        100,
        True,
        1,
    )
    assert response.json()["next"] is None


def test_redeem_then_look_up_use_and_refuse_a_second_use(client, program, member):
    reward = RewardFactory(program=program, cost_points=300, value=Decimal("3"))
    response = post(client, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": reward.pk})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["points"], body["kind"], body["value"]) == ("issued", 300, "amount_off", "3.0000")
    assert body["balance"]["available"] == 700
    code = body["code"]
    assert client.get(f"/api/v1/redemptions/{code.lower()}").json()["status"] == "issued"
    used = post(client, f"/api/v1/redemptions/{code}/use", {"order_id": "A-1"})
    assert used.status_code == 200
    assert (used.json()["status"], used.json()["order_id"]) == ("used", "A-1")
    again = post(client, f"/api/v1/redemptions/{code}/use", {"order_id": "A-2"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "coupon_already_used"


def test_cancel_returns_the_points(client, program, member):
    reward = RewardFactory(program=program, cost_points=300)
    code = post(client, "/api/v1/redemptions", {"external_id": member.external_id, "reward_id": reward.pk}).json()[
        "code"
    ]
    response = post(client, f"/api/v1/redemptions/{code}/cancel", {})
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    member.refresh_from_db()
    assert member.available == 1000
    again = post(client, f"/api/v1/redemptions/{code}/cancel", {})
    assert (again.status_code, again.json()["error"]["code"]) == (422, "coupon_not_usable")


@pytest.mark.parametrize(
    ("reward_fields", "code", "reason"),
    [
        ({"cost_points": 5000}, "insufficient_points", None),
        ({"stock": 0}, "reward_unavailable", "out_of_stock"),
        ({"is_active": False}, "reward_unavailable", "inactive"),
    ],
)
def test_business_refusals_are_422(client, program, member, reward_fields, code, reason):
    reward = RewardFactory(program=program, **reward_fields)
    response = post(client, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": reward.pk})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    if reason:
        assert response.json()["error"]["details"]["reason"] == reason
    assert not Redemption.objects.exists()


def test_points_for_amount_takes_the_chosen_points(client, program, member):
    reward = RewardFactory(
        program=program,
        kind=Reward.Kind.POINTS_FOR_AMOUNT,
        cost_points=None,
        value=Decimal("0.05"),
        points_step=50,
        points_min=50,
        points_max=500,
    )
    ok = post(client, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": reward.pk, "points": 200})
    assert ok.status_code == 201
    assert (ok.json()["points"], ok.json()["value"]) == (200, "10.0000")
    bad = post(client, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": reward.pk, "points": 210})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["field"] == "points"


def test_bad_input_and_unknowns(client, program, member):
    assert post(client, "/api/v1/redemptions", {"member_id": member.pk}).status_code == 400
    missing = post(client, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": 999999})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "reward_not_found")
    assert client.get("/api/v1/redemptions/NOPE").status_code == 404
    assert post(client, "/api/v1/redemptions/ACEF-GHJK-MNPR/use", {"order_id": "x"}).status_code == 404
    reward = RewardFactory(program=program)
    code = post(client, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": reward.pk}).json()["code"]
    assert post(client, f"/api/v1/redemptions/{code}/use", {}).status_code == 400


def test_idempotency_required_replayed_and_conflicting(client, program, member):
    reward = RewardFactory(program=program, cost_points=100)
    body = {"member_id": member.pk, "reward_id": reward.pk}
    no_key = client.post("/api/v1/redemptions", body, format="json")
    assert no_key.status_code == 400
    first = post(client, "/api/v1/redemptions", body, key="k-1")
    second = post(client, "/api/v1/redemptions", body, key="k-1")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["code"] == second.json()["code"]
    assert Redemption.objects.count() == 1
    conflict = post(client, "/api/v1/redemptions", {**body, "points": 100}, key="k-1")
    assert conflict.status_code == 409


def test_another_programs_key_sees_nothing(client, program, member):
    reward = RewardFactory(program=program, cost_points=100)
    code = post(client, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": reward.pk}).json()["code"]
    other = client_with(make_key(ProgramFactory())[1])
    assert other.get(f"/api/v1/redemptions/{code}").status_code == 404
    assert post(other, f"/api/v1/redemptions/{code}/use", {"order_id": "x"}).status_code == 404
    assert post(other, f"/api/v1/redemptions/{code}/cancel", {}).status_code == 404
    refused = post(other, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": reward.pk})
    assert refused.status_code == 404
    assert other.get("/api/v1/rewards").json()["results"] == []


def test_scopes(program, member):
    reward = RewardFactory(program=program, cost_points=100)
    reader = client_with(make_key(program, scopes=["read"])[1])
    assert reader.get("/api/v1/rewards").status_code == 200
    assert post(reader, "/api/v1/redemptions", {"member_id": member.pk, "reward_id": reward.pk}).status_code == 403
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/rewards").status_code == 401


def _stock_gone(monkeypatch):
    """The last unit taken by someone else between the checks and the stock update: the refusal
    is found after the ledger entry and the coupon are written."""
    from rewards import services

    monkeypatch.setattr(services, "_take_stock", lambda reward: False)


def test_a_refusal_found_after_the_writes_leaves_nothing_written_and_is_replayed(client, program, member, monkeypatch):
    from loyalty.models import IdempotencyRecord, LedgerEntry

    reward = RewardFactory(program=program, cost_points=100, stock=5)
    entries = LedgerEntry.objects.count()
    _stock_gone(monkeypatch)
    body = {"member_id": member.pk, "reward_id": reward.pk}
    refused = post(client, "/api/v1/redemptions", body, key="late-1")
    assert refused.status_code == 422, refused.json()
    assert refused.json()["error"]["details"]["reason"] == "out_of_stock"
    assert Redemption.objects.count() == 0
    assert LedgerEntry.objects.count() == entries
    member.refresh_from_db()
    assert member.available == 1000
    # Only the HTTP record of the refusal remains (the ledger's own key was rolled back).
    assert list(IdempotencyRecord.objects.filter(program=program).values_list("key", "response_status")) == [
        ("http:late-1", 422)
    ]
    monkeypatch.undo()
    again = post(client, "/api/v1/redemptions", body, key="late-1")
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (422, "true")
    assert again.json() == refused.json()
    assert Redemption.objects.count() == 0
    assert post(client, "/api/v1/redemptions", body, key="late-2").status_code == 201


def test_a_refusal_is_replayed_even_when_the_retry_would_now_succeed(client, program, member):
    reward = RewardFactory(program=program, cost_points=100, is_active=False)
    body = {"member_id": member.pk, "reward_id": reward.pk}
    assert post(client, "/api/v1/redemptions", body, key="r").status_code == 422
    Reward.objects.filter(pk=reward.pk).update(is_active=True)
    replay = post(client, "/api/v1/redemptions", body, key="r")
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (422, "true")
    assert Redemption.objects.count() == 0
