"""Fraud limits under real concurrency (threads with their own connections, released
together): activities of one member are counted under the member's lock, so none escapes a
limit; two reviewers deciding one hold at once make one decision (the hold's row lock)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction

from loyalty.models import LedgerEntry, Member, StaffAction
from loyalty.selectors import ledger_problems
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.loyalty.test_concurrency import run_together
from workflows import fraud, services
from workflows.models import FraudLimits, ReviewHold

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _fresh_limits():
    fraud.limits_forget()
    yield
    fraud.limits_forget()


def _program_with_limit(**values):
    program = ProgramFactory(timezone="Europe/Paris")
    EarningRuleFactory(program=program, points=10)
    FraudLimits.objects.create(program=program, is_active=True, **values)
    fraud.limits_forget()
    return program


def test_concurrent_activities_of_one_member_do_not_escape_the_daily_limit():
    program = _program_with_limit(max_activities_per_day=3)
    member = MemberFactory(program=program)

    def purchase(i: int) -> bool:
        with transaction.atomic(durable=True):
            return services.activity_report(
                program=program,
                member=member,
                type="purchase",
                order_id=f"o-{i}",
                amount=Decimal("20"),
                occurred_at=WEDNESDAY_NOON,
                now=WEDNESDAY_NOON,
            ).held_for_review

    results = run_together(8, purchase)
    assert all(kind == "ok" for kind, _ in results), results
    assert sorted(held for _, held in results) == [False] * 3 + [True] * 5
    assert ReviewHold.objects.count() == 5
    member.refresh_from_db()
    assert (member.available, member.pending) == (30, 50)
    assert list(ledger_problems()) == []


@pytest.mark.parametrize("second", ["release", "reject"])
def test_two_reviewers_deciding_one_hold_at_once_make_one_decision(second):
    program = _program_with_limit(max_activities_per_day=0)
    member = MemberFactory(program=program)
    hold = services.activity_report(
        program=program,
        member=member,
        type="purchase",
        order_id="o-1",
        amount=Decimal("20"),
        occurred_at=WEDNESDAY_NOON,
        now=WEDNESDAY_NOON,
    ).hold
    reviewers = []
    for _ in range(2):
        user = StaffFactory()  # the flush of a transactional test empties the groups: the permission itself
        user.user_permissions.add(Permission.objects.get(codename="decide_reviewhold"))
        reviewers.append(type(user).objects.get(pk=user.pk))

    def decide(i: int) -> str:
        if i == 0 or second == "release":
            outcome = fraud.review_hold_release(hold_id=hold.pk, reviewer=reviewers[i], now=WEDNESDAY_NOON)
        else:
            outcome = fraud.review_hold_reject(hold_id=hold.pk, reviewer=reviewers[i], note="no", now=WEDNESDAY_NOON)
        return "already" if outcome.already else "decided"

    results = run_together(2, decide)
    outcomes = sorted(value if kind == "ok" else type(value).__name__ for kind, value in results)
    if second == "release":
        assert outcomes == ["already", "decided"]
    else:
        assert outcomes == ["AlreadyDecided", "decided"]  # the loser is refused, nothing written
    assert StaffAction.objects.filter(action__in=["hold_release", "hold_reject"]).count() == 1
    member = Member.objects.get(pk=member.pk)
    assert member.pending == 0
    assert member.available in (0, 10)
    assert LedgerEntry.objects.filter(kind="reversal").count() == (1 if member.available == 0 else 0)
    assert list(ledger_problems()) == []
