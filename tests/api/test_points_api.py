"""POST /adjustments and POST /transfers (docs/api.md)."""

import uuid

import pytest

from loyalty.models import LedgerEntry, Member
from loyalty.services import points_earn
from tests.api.conftest import client_with, make_key
from tests.loyalty.factories import MemberFactory

pytestmark = pytest.mark.django_db


def post(client, path, body, key=None):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


@pytest.fixture
def adjust_client(program):
    return client_with(make_key(program, scopes=["read", "write", "adjust"], name="POS")[1])


def test_adjustment_credit_and_debit_with_reason_and_source(adjust_client, program, member):
    credit = post(adjust_client, "/api/v1/adjustments", {"member_id": member.pk, "points": 120, "reason": "Goodwill"})
    assert credit.status_code == 201, credit.json()
    body = credit.json()
    assert body["balance"]["available"] == 120
    (entry,) = body["entries"]
    assert (entry["kind"], entry["points"], entry["reason"]) == ("adjust", 120, "Goodwill")
    assert entry["reference"].startswith("api-key:")
    assert "(POS)" in entry["reference"]
    debit = post(
        adjust_client, "/api/v1/adjustments", {"external_id": member.external_id, "points": -200, "reason": "Fix"}
    )
    assert debit.status_code == 201
    assert debit.json()["balance"]["available"] == -80  # a staff debit may leave a debt


def test_adjustment_needs_the_adjust_scope_reason_and_non_zero_points(api_client, adjust_client, member):
    refused = post(api_client, "/api/v1/adjustments", {"member_id": member.pk, "points": 10, "reason": "x"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_scope")
    for bad in ({"points": 0, "reason": "x"}, {"points": 10}, {"points": 10, "reason": ""}):
        response = post(adjust_client, "/api/v1/adjustments", {"member_id": member.pk, **bad})
        assert response.status_code == 400, bad
    assert not LedgerEntry.objects.exists()


def test_adjustment_idempotency_and_isolation(adjust_client, member, other_program):
    body = {"member_id": member.pk, "points": 50, "reason": "Once"}
    first = post(adjust_client, "/api/v1/adjustments", body, key="adj-1")
    second = post(adjust_client, "/api/v1/adjustments", body, key="adj-1")
    assert first.json() == second.json()
    assert LedgerEntry.objects.count() == 1
    assert post(adjust_client, "/api/v1/adjustments", {**body, "points": 51}, key="adj-1").status_code == 409
    stranger = MemberFactory(program=other_program)
    assert post(adjust_client, "/api/v1/adjustments", {**body, "member_id": stranger.pk}).status_code == 404


def test_transfer_moves_points_and_keeps_expiry(api_client, program, member):
    receiver = MemberFactory(program=program)
    points_earn(program=program, member_id=member.pk, points=300)
    response = post(
        api_client,
        "/api/v1/transfers",
        {"from": {"member_id": member.pk}, "to": {"member_id": receiver.pk}, "points": 100},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["from_balance"]["available"], body["to_balance"]["available"]) == (200, 100)
    lot = LedgerEntry.objects.get(member=receiver)
    assert lot.expires_at == LedgerEntry.objects.get(member=member, kind="earn").expires_at


def test_transfer_refusals(api_client, program, member, other_program):
    receiver = MemberFactory(program=program)
    points_earn(program=program, member_id=member.pk, points=50)
    short = post(
        api_client,
        "/api/v1/transfers",
        {"from": {"member_id": member.pk}, "to": {"member_id": receiver.pk}, "points": 60},
    )
    assert (short.status_code, short.json()["error"]["code"]) == (422, "insufficient_points")
    same = post(
        api_client, "/api/v1/transfers", {"from": {"member_id": member.pk}, "to": {"member_id": member.pk}, "points": 5}
    )
    assert same.status_code == 400
    stranger = MemberFactory(program=other_program)
    foreign = post(
        api_client,
        "/api/v1/transfers",
        {"from": {"member_id": member.pk}, "to": {"member_id": stranger.pk}, "points": 5},
    )
    assert foreign.status_code == 404
    assert post(api_client, "/api/v1/transfers", {"from": {"member_id": member.pk}, "points": 5}).status_code == 400
    assert Member.objects.get(pk=member.pk).available == 50
