"""Stock and balances under real concurrency: threads with their own connections."""

from __future__ import annotations

import pytest
from django.db import transaction

from loyalty import services as ledger
from loyalty.selectors import ledger_problems
from rewards import services
from rewards.models import Redemption
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.loyalty.test_concurrency import run_together

from .conftest import NOW
from .factories import RewardFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _funded(program, points):
    member = MemberFactory(program=program)
    ledger.points_earn(program=program, member_id=member.pk, points=points, now=NOW)
    return member


def test_concurrent_redemptions_of_the_last_unit_issue_one_coupon():
    program = ProgramFactory(min_redemption=0)
    reward = RewardFactory(program=program, cost_points=100, stock=1)
    members = [_funded(program, 100) for _ in range(8)]

    def attempt(i: int) -> str:
        with transaction.atomic(durable=True):
            return services.reward_redeem(program=program, member=members[i], reward=reward, now=NOW).redemption.code

    results = run_together(8, attempt)
    assert sum(kind == "ok" for kind, _ in results) == 1, results
    assert Redemption.objects.count() == 1
    reward.refresh_from_db()
    assert reward.issued_count == 1
    assert sum(m.available for m in type(members[0]).objects.filter(program=program)) == 700
    assert not list(ledger_problems())


def test_concurrent_redemptions_cannot_overspend_a_small_balance():
    program = ProgramFactory(min_redemption=0)
    reward = RewardFactory(program=program, cost_points=60)
    member = _funded(program, 100)

    def attempt(i: int) -> str:
        with transaction.atomic(durable=True):
            return services.reward_redeem(program=program, member=member, reward=reward, now=NOW).redemption.code

    results = run_together(8, attempt)
    assert sum(kind == "ok" for kind, _ in results) == 1, results
    member.refresh_from_db()
    assert member.available == 40
    assert Redemption.objects.count() == 1
    assert not list(ledger_problems())


def test_concurrent_per_member_limit():
    program = ProgramFactory(min_redemption=0)
    reward = RewardFactory(program=program, cost_points=10, per_member_limit=1)
    member = _funded(program, 100)

    def attempt(i: int) -> str:
        with transaction.atomic(durable=True):
            return services.reward_redeem(program=program, member=member, reward=reward, now=NOW).redemption.code

    results = run_together(6, attempt)
    assert sum(kind == "ok" for kind, _ in results) == 1, results
    assert Redemption.objects.count() == 1


def test_use_and_cancel_racing_on_one_coupon_do_exactly_one():
    program = ProgramFactory(min_redemption=0)
    reward = RewardFactory(program=program, cost_points=50)
    member = _funded(program, 100)
    code = services.reward_redeem(program=program, member=member, reward=reward, now=NOW).redemption.code

    def attempt(i: int) -> str:
        with transaction.atomic(durable=True):
            if i % 2:
                return services.redemption_use(program=program, code=code, order_id=f"o{i}", now=NOW).status
            return services.redemption_cancel(program=program, code=code, now=NOW).status

    results = run_together(6, attempt)
    assert sum(kind == "ok" for kind, _ in results) == 1, results
    member.refresh_from_db()
    status = Redemption.objects.get().status
    assert member.available == (100 if status == "cancelled" else 50)
    assert not list(ledger_problems())
