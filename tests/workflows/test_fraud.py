"""Fraud limits (docs/fraud.md): velocity limits hold an activity's points for review, a
reviewer releases or rejects them (audited, through the ledger), and backdated activities
cannot get around daily caps or the return window."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from cards.models import Card, CardEvent
from loyalty import errors
from loyalty.models import Activity, LedgerEntry, Member, StaffAction
from loyalty.selectors import ledger_problems
from loyalty.services import HELD_UNTIL
from tests.loyalty.factories import MemberFactory, StaffFactory
from workflows import fraud, services
from workflows.models import FraudLimits, ReviewHold

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

NOON = WEDNESDAY_NOON


@pytest.fixture(autouse=True)
def _fresh_limits():
    fraud.limits_forget()
    yield
    fraud.limits_forget()


@pytest.fixture
def member(program):
    return MemberFactory(program=program)


@pytest.fixture
def ten_per_purchase(program):
    return EarningRuleFactory(program=program, name="Ten per purchase", points=10)


def limits(program, **values):
    row = FraudLimits.objects.create(program=program, is_active=True, **values)
    fraud.limits_forget()
    return row


def buy(program, member, n, *, amount="20.00", when=NOON, now=None, **kwargs):
    return services.activity_report(
        program=program,
        member=member,
        type="purchase",
        order_id=f"order-{member.pk}-{n}",
        amount=Decimal(amount),
        occurred_at=when,
        now=now or when,
        **kwargs,
    )


def reviewer(role="Manager"):
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=role))
    return type(user).objects.get(pk=user.pk)  # fresh permission cache


def balances(member):
    member = Member.objects.get(pk=member.pk)
    return member.available, member.pending


def assert_ledger_verifies():
    assert list(ledger_problems()) == []


# --- the limits -----------------------------------------------------------------------------------


def test_activities_past_the_daily_limit_are_accepted_but_held(program, member, ten_per_purchase):
    limits(program, max_activities_per_day=2)
    first, second = buy(program, member, 1), buy(program, member, 2)
    third = buy(program, member, 3)
    assert not first.held_for_review
    assert not second.held_for_review
    assert third.held_for_review
    assert third.points == 10
    assert balances(member) == (20, 10)
    entry = LedgerEntry.objects.get(activity=third.activity)
    assert entry.available_at == HELD_UNTIL
    assert entry.released_at is None
    hold = ReviewHold.objects.get()
    assert (hold.reason, hold.points, hold.status, hold.member_id) == ("activities_per_day", 10, "pending", member.pk)
    assert "3 activities today (limit 2)" in hold.detail


def test_the_daily_limit_counts_by_the_program_day_of_the_report(program, member, ten_per_purchase):
    limits(program, max_activities_per_day=1)
    buy(program, member, 1)
    assert not buy(program, member, 2, now=NOON + dt.timedelta(days=1)).held_for_review


def test_points_past_the_daily_limit_are_held(program, member, ten_per_purchase):
    limits(program, max_points_per_day=25)
    assert not buy(program, member, 1).held_for_review
    assert not buy(program, member, 2).held_for_review
    held = buy(program, member, 3)
    assert held.held_for_review
    assert ReviewHold.objects.get().reason == "points_per_day"


def test_refunds_past_the_monthly_limit_hold_the_next_points(program, member, ten_per_purchase):
    limits(program, max_refunds_per_month=1)
    buy(program, member, 1)
    buy(program, member, 2)
    for n in (1, 2):
        services.refund_report(program=program, order_id=f"order-{member.pk}-{n}", amount=Decimal("5"), now=NOON)
    held = buy(program, member, 3)
    assert held.held_for_review
    assert ReviewHold.objects.get().reason == "refunds_per_month"
    # Next month the count starts again.
    assert not buy(program, member, 4, when=NOON + dt.timedelta(days=31)).held_for_review


def test_a_card_shared_by_too_many_members_holds_the_points(program, member, ten_per_purchase):
    limits(program, max_members_per_card=2)
    card = Card.objects.create(
        number="40000000000001", program=program, member=member, status="active", created_at=NOON
    )
    assert not buy(program, member, 1).held_for_review
    # The card's history names three members: it passed from hand to hand.
    for other in (MemberFactory(program=program), MemberFactory(program=program)):
        CardEvent.objects.create(card=card, kind="assigned", member=other, at=NOON)
    CardEvent.objects.create(card=card, kind="merged", member=member, at=NOON)
    held = buy(program, member, 2)
    assert held.held_for_review
    assert ReviewHold.objects.get().reason == "members_per_card"


def test_the_same_amount_repeated_in_a_day_is_held(program, member, ten_per_purchase):
    limits(program, max_same_amount_per_day=2)
    buy(program, member, 1, amount="49.90")
    buy(program, member, 2, amount="49.90")
    assert not buy(program, member, 3, amount="12.00").held_for_review
    held = buy(program, member, 4, amount="49.90")
    assert held.held_for_review
    assert ReviewHold.objects.get().reason == "same_amount"


def test_inactive_limits_hold_nothing(program, member, ten_per_purchase):
    FraudLimits.objects.create(program=program, is_active=False, max_activities_per_day=0)
    assert not buy(program, member, 1).held_for_review


def test_an_activity_that_earns_nothing_is_not_queued(program, member):
    limits(program, max_activities_per_day=0)
    assert not services.activity_report(program=program, member=member, type="review", occurred_at=NOON).held_for_review
    assert not ReviewHold.objects.exists()


def test_the_api_answer_says_the_points_are_held(program, member, ten_per_purchase):
    from workflows.api import activity_result_data

    limits(program, max_activities_per_day=0)
    data = activity_result_data(buy(program, member, 1), shows_member_data=True)
    assert data["held_for_review"] is True
    assert data["points_awarded"] == 10
    assert data["balance"]["pending"] == 10


def test_a_held_lot_is_not_released_by_the_schedule(program, member, ten_per_purchase):
    limits(program, max_activities_per_day=0)
    buy(program, member, 1)
    from loyalty.services import points_release

    points_release(now=NOON + dt.timedelta(days=3650))
    assert balances(member) == (0, 10)
    assert_ledger_verifies()


def test_an_idempotent_retry_answers_held_again(program, member, ten_per_purchase):
    limits(program, max_activities_per_day=0)
    first = buy(program, member, 1, idempotency_key="k-1")
    again = buy(program, member, 1, idempotency_key="k-1")
    assert again.replayed
    assert again.held_for_review
    assert again.hold == first.hold
    assert ReviewHold.objects.count() == 1


# --- decisions ------------------------------------------------------------------------------------


@pytest.fixture
def held(program, member, ten_per_purchase):
    limits(program, max_activities_per_day=0)
    return buy(program, member, 1).hold


def test_release_makes_the_points_available_now_and_is_audited(program, member, held):
    manager = reviewer()
    later = NOON + dt.timedelta(hours=2)
    decision = fraud.review_hold_release(hold_id=held.pk, reviewer=manager, note="Known customer", now=later)
    assert decision.points == 10
    assert not decision.already
    assert balances(member) == (10, 0)
    entry = LedgerEntry.objects.get(activity=held.activity)
    assert entry.released_at == later
    held.refresh_from_db()
    assert (held.status, held.decided_by, held.points_moved) == ("released", manager, 10)
    action = StaffAction.objects.get(action="hold_release")
    assert (action.member_id, action.actor, action.details["points"]) == (member.pk, manager, 10)
    assert_ledger_verifies()


def test_reject_reverses_the_points_through_the_ledger_and_is_audited(program, member, held):
    manager = reviewer("Owner")
    decision = fraud.review_hold_reject(hold_id=held.pk, reviewer=manager, note="Same receipt 9 times", now=NOON)
    assert decision.points == 10
    assert balances(member) == (0, 0)
    kinds = list(LedgerEntry.objects.filter(member=member).order_by("id").values_list("kind", "points"))
    assert kinds == [("earn", 10), ("reversal", -10)]  # nothing deleted
    assert Member.objects.get(pk=member.pk).lifetime_earned == 0
    assert StaffAction.objects.get(action="hold_reject").reason == "Same receipt 9 times"
    assert_ledger_verifies()


def test_a_rejection_needs_a_reason(held):
    with pytest.raises(errors.ReasonRequired):
        fraud.review_hold_reject(hold_id=held.pk, reviewer=reviewer(), note=" ")
    assert ReviewHold.objects.get().status == "pending"


def test_support_may_not_decide(held):
    with pytest.raises(errors.NotAllowed):
        fraud.review_hold_release(hold_id=held.pk, reviewer=reviewer("Support"))
    assert ReviewHold.objects.get().status == "pending"


def test_a_decided_hold_cannot_be_decided_the_other_way(member, held):
    manager = reviewer()
    fraud.review_hold_release(hold_id=held.pk, reviewer=manager, now=NOON)
    assert fraud.review_hold_release(hold_id=held.pk, reviewer=manager, now=NOON).already
    with pytest.raises(errors.AlreadyDecided):
        fraud.review_hold_reject(hold_id=held.pk, reviewer=manager, note="too late", now=NOON)
    assert balances(member) == (10, 0)


def test_another_programs_hold_is_not_found(held, other_program):
    with pytest.raises(errors.NotFound):
        fraud.review_hold_release(hold_id=held.pk, reviewer=reviewer(), program_ids=[other_program.pk])


def test_a_refund_while_held_then_a_rejection_takes_back_only_what_is_left(program, member, held):
    services.refund_report(program=program, order_id=held.activity.order_id, amount=Decimal("10"), now=NOON)
    assert balances(member) == (0, 5)
    decision = fraud.review_hold_reject(hold_id=held.pk, reviewer=reviewer(), note="fraud", now=NOON)
    assert decision.points == 5
    assert balances(member) == (0, 0)
    # A later refund of the rest takes nothing more: the rejection counted as reversed.
    services.refund_report(program=program, order_id=held.activity.order_id, amount=Decimal("10"), now=NOON)
    assert balances(member) == (0, 0)
    assert_ledger_verifies()


# --- backdating -----------------------------------------------------------------------------------


def test_a_backdated_activity_cannot_use_a_past_days_unused_cap(program, member):
    EarningRuleFactory(program=program, trigger="store_visit", points=10, cap_per_day=20)
    today = NOON
    last_week = NOON - dt.timedelta(days=7)

    def visit(when):
        return services.activity_report(
            program=program, member=member, type="store_visit", occurred_at=when, now=today
        ).points

    assert [visit(today), visit(today)] == [10, 10]
    # Last week's cap is unused, but today's reporting day is full.
    assert visit(last_week) == 0


def test_backdated_points_count_against_the_reporting_days_cap(program, member):
    EarningRuleFactory(program=program, trigger="store_visit", points=10, cap_per_day=20)
    today = NOON

    def visit(when):
        return services.activity_report(
            program=program, member=member, type="store_visit", occurred_at=when, now=today
        ).points

    assert visit(today - dt.timedelta(days=7)) == 10
    assert visit(today - dt.timedelta(days=3)) == 10
    assert visit(today) == 0  # 20 reported today already


def test_an_activity_reported_late_still_meets_its_own_days_cap(program, member):
    EarningRuleFactory(program=program, trigger="store_visit", points=10, cap_per_day=20)
    today, tomorrow = NOON, NOON + dt.timedelta(days=1)

    def visit(when, now):
        return services.activity_report(
            program=program, member=member, type="store_visit", occurred_at=when, now=now
        ).points

    assert [visit(today, today), visit(today, today)] == [10, 10]
    assert visit(today, tomorrow) == 0  # today's cap is used, whatever tomorrow's is
    assert visit(tomorrow, tomorrow) == 10


def test_a_backdated_activitys_points_are_pending_from_the_report(program, member, ten_per_purchase):
    program.pending_days = 14
    program.save()
    reported = NOON
    result = buy(program, member, 1, when=NOON - dt.timedelta(days=20), now=reported)
    entry = result.entries[0]
    assert entry.available_at == reported + dt.timedelta(days=14)
    assert balances(member) == (0, 10)
    same_day = buy(program, member, 2, when=NOON - dt.timedelta(hours=2), now=reported)
    assert same_day.entries[0].available_at == NOON - dt.timedelta(hours=2) + dt.timedelta(days=14)
    assert Activity.objects.get(pk=result.activity.pk).reported_at == reported
