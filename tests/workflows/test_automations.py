"""Automations (`workflows.automations`): triggers, conditions, actions, periods, idempotency,
concurrency and crash recovery of the daily job, the ready-made automations, `run_workflows`."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import transaction

from loyalty import services as ledger
from loyalty.models import Activity, LedgerEntry, Member
from notifications.models import EmailMessage
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.loyalty.test_concurrency import run_together
from tests.tiers.factories import TierFactory
from tiers import services as tier_services
from tiers.models import MemberTier, TierChange
from workflows import automations, services
from workflows.models import Automation, AutomationRun

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
# Monday 23 November 2026, 10:00 in Paris (ISO week 48).
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=PARIS)
ENROLLED = dt.datetime(2025, 1, 10, 12, 0, tzinfo=PARIS)


@pytest.fixture
def program(db):
    return ProgramFactory(timezone="Europe/Paris", expiry_days=None, points_name="beans")


@pytest.fixture
def member(program):
    return MemberFactory(program=program, enrolled_at=ENROLLED, email_consent=True)


def automation_for(program, **fields) -> Automation:
    """An active daily automation awarding 10 points once a year, unless told otherwise."""
    values = {
        "name": "Test automation",
        "is_active": True,
        "trigger": Automation.Trigger.DAILY,
        "period": Automation.Period.YEAR,
        "award_points": 10,
        **fields,
    }
    tiers = values.pop("tiers", [])
    automation = Automation.objects.create(program=program, **values)
    automation.tiers.set(tiers)
    return automation


def fired(automation: Automation) -> set[int]:
    return set(AutomationRun.objects.filter(automation=automation).values_list("member_id", flat=True))


def purchase(member: Member, *, at: dt.datetime, amount: str = "100", type: str = "purchase") -> Activity:
    """A stored activity without rules (the conditions read activities, not their points)."""
    return Activity.objects.create(
        program=member.program,
        member=member,
        type=type,
        occurred_at=at,
        order_id=f"o-{Activity.objects.count()}" if type == "purchase" else "",
        amount=Decimal(amount),
    )


def snapshot() -> dict[str, list]:
    return {
        "entries": list(LedgerEntry.objects.order_by("id").values_list("id", "member_id", "points", "reason")),
        "runs": list(AutomationRun.objects.order_by("id").values_list("id", "member_id", "period_key", "points")),
        "tiers": list(MemberTier.objects.order_by("member_id").values_list("member_id", "tier_id", "manual_until")),
        "changes": TierChange.objects.count(),
        "balances": list(Member.objects.order_by("id").values_list("id", "available", "lifetime_earned")),
    }


# --------------------------------------------------------------------------------------------
# The daily job and the award action


def test_daily_automation_awards_points_through_the_ledger_and_records_the_run(program, member):
    automation = automation_for(program, name="Thank you", award_points=25)

    result = automations.automations_run(now=NOW)

    assert (result.automations, result.runs, result.points) == (1, 1, 25)
    entry = LedgerEntry.objects.get(member=member)
    assert (entry.kind, entry.points, entry.reason) == ("earn", 25, "Thank you")
    member.refresh_from_db()
    assert member.available == 25
    run = AutomationRun.objects.get()
    assert (run.automation, run.member, run.period_key, run.points, run.fired_at) == (
        automation,
        member,
        "2026",
        25,
        NOW,
    )
    assert run.details["points"]["entries"] == [entry.id]


def test_the_points_carry_an_idempotency_key_per_firing(program, member):
    automation = automation_for(program)
    automations.automations_run(now=NOW)
    # Even if the run row were lost, the ledger would refuse to post the same firing twice.
    replay = ledger.points_earn(
        program=program,
        member_id=member.pk,
        points=10,
        reason="Test automation",
        reference=f"automation:{automation.pk}",
        idempotency_key=f"automation:{automation.pk}:{member.pk}:2026",
        now=NOW,
    )
    assert replay.replayed
    assert LedgerEntry.objects.filter(member=member).count() == 1


def test_inactive_automations_other_programs_and_blocked_members_are_left_alone(program, member):
    automation_for(program, is_active=False)
    active = automation_for(program, name="Active")
    blocked = MemberFactory(program=program, enrolled_at=ENROLLED, status=Member.Status.BLOCKED)
    stranger = MemberFactory(program=ProgramFactory(), enrolled_at=ENROLLED)

    automations.automations_run(now=NOW)

    assert fired(active) == {member.pk}
    assert AutomationRun.objects.count() == 1
    assert not LedgerEntry.objects.filter(member__in=[blocked, stranger]).exists()


def test_members_enrolled_after_the_run_moment_are_not_considered(program, member):
    automation = automation_for(program)
    later = MemberFactory(program=program, enrolled_at=NOW + dt.timedelta(hours=1))
    automations.automations_run(now=NOW)
    assert fired(automation) == {member.pk}
    assert later.pk not in fired(automation)


def test_run_needs_an_aware_moment(program):
    with pytest.raises(Exception, match="timezone-aware"):
        automations.automations_run(now=dt.datetime(2026, 11, 23, 10, 0))


# --------------------------------------------------------------------------------------------
# Conditions: each one true and false


@pytest.mark.parametrize(("min_orders", "fires"), [(2, True), (3, False)])
def test_min_orders_counts_purchases_in_the_window(program, member, min_orders, fires):
    purchase(member, at=NOW - dt.timedelta(days=10))
    purchase(member, at=NOW - dt.timedelta(days=300))
    purchase(member, at=NOW - dt.timedelta(days=400))  # outside the 365-day window
    purchase(member, at=NOW - dt.timedelta(days=5), type="store_visit")  # not an order
    purchase(member, at=NOW + dt.timedelta(days=1))  # after the run moment
    automation = automation_for(program, min_orders=min_orders, window_days=365)
    automations.automations_run(now=NOW)
    assert (member.pk in fired(automation)) is fires


def test_without_a_window_orders_are_counted_over_the_whole_history(program, member):
    for days in (10, 400, 800):
        purchase(member, at=NOW - dt.timedelta(days=days))
    in_window = automation_for(program, name="window", min_orders=3, window_days=365)
    ever = automation_for(program, name="ever", min_orders=3)
    automations.automations_run(now=NOW)
    assert fired(in_window) == set()
    assert fired(ever) == {member.pk}


@pytest.mark.parametrize(("minimum", "fires"), [("150.00", True), ("150.01", False)])
def test_min_amount_spent_sums_purchases_and_ignores_refunds(program, member, minimum, fires):
    purchase(member, at=NOW - dt.timedelta(days=3), amount="100")
    purchase(member, at=NOW - dt.timedelta(days=2), amount="50")
    purchase(member, at=NOW - dt.timedelta(days=1), amount="80", type="refund")
    purchase(member, at=NOW - dt.timedelta(days=40), amount="999")  # outside the window
    automation = automation_for(program, min_amount_spent=Decimal(minimum), window_days=30)
    automations.automations_run(now=NOW)
    assert (member.pk in fired(automation)) is fires


@pytest.mark.parametrize(("minimum", "fires"), [(100, True), (101, False)])
def test_min_points_earned_sums_earn_entries_in_the_window(program, member, minimum, fires):
    ledger.points_earn(program=program, member_id=member.pk, points=60, occurred_at=NOW - dt.timedelta(days=5))
    ledger.points_earn(program=program, member_id=member.pk, points=40, occurred_at=NOW - dt.timedelta(days=20))
    ledger.points_earn(program=program, member_id=member.pk, points=500, occurred_at=NOW - dt.timedelta(days=60))
    ledger.points_adjust(
        program=program, member_id=member.pk, points=300, reason="goodwill", actor=StaffFactory(), now=NOW
    )
    automation = automation_for(program, min_points_earned=minimum, window_days=30)
    automations.automations_run(now=NOW)
    assert (member.pk in fired(automation)) is fires


@pytest.mark.parametrize(("last_activity_days_ago", "fires"), [(91, True), (90, True), (89, False)])
def test_min_days_inactive_reads_the_latest_activity(program, member, last_activity_days_ago, fires):
    purchase(member, at=NOW - dt.timedelta(days=200))
    purchase(member, at=NOW - dt.timedelta(days=last_activity_days_ago), type="review")
    automation = automation_for(program, min_days_inactive=90)
    automations.automations_run(now=NOW)
    assert (member.pk in fired(automation)) is fires


@pytest.mark.parametrize(("enrolled_days_ago", "fires"), [(100, True), (30, False)])
def test_min_days_inactive_counts_from_enrolment_without_activity(program, enrolled_days_ago, fires):
    member = MemberFactory(program=program, enrolled_at=NOW - dt.timedelta(days=enrolled_days_ago))
    automation = automation_for(program, min_days_inactive=90)
    automations.automations_run(now=NOW)
    assert (member.pk in fired(automation)) is fires


def test_tier_condition_selects_members_in_one_of_the_tiers(program, member):
    silver = TierFactory(program=program, name="Silver", position=1)
    gold = TierFactory(program=program, name="Gold", position=2)
    golden = MemberFactory(program=program, enrolled_at=ENROLLED)
    MemberTier.objects.create(member=member, tier=silver, since=ENROLLED)
    MemberTier.objects.create(member=golden, tier=gold, since=ENROLLED)
    no_tier = MemberFactory(program=program, enrolled_at=ENROLLED)
    automation = automation_for(program, tiers=[gold])
    automations.automations_run(now=NOW)
    assert fired(automation) == {golden.pk}
    assert no_tier.pk not in fired(automation)


@pytest.mark.parametrize(("days", "fires"), [(30, True), (31, False)])
def test_min_days_enrolled(program, days, fires):
    member = MemberFactory(program=program, enrolled_at=NOW - dt.timedelta(days=30))
    automation = automation_for(program, min_days_enrolled=days)
    automations.automations_run(now=NOW)
    assert (member.pk in fired(automation)) is fires


@pytest.mark.parametrize(
    ("enrolled_at", "fires"),
    [
        (dt.datetime(2025, 11, 23, 18, 0, tzinfo=PARIS), True),
        (dt.datetime(2020, 11, 23, 8, 0, tzinfo=PARIS), True),
        (dt.datetime(2025, 11, 22, 18, 0, tzinfo=PARIS), False),
        # 23:30 UTC on the 22nd is 00:30 on the 23rd in Paris: the program's day counts.
        (dt.datetime(2025, 11, 22, 23, 30, tzinfo=dt.UTC), True),
        # 23:30 Paris on the 23rd is still the 23rd locally, though the 23rd 22:30 UTC.
        (dt.datetime(2025, 11, 23, 23, 30, tzinfo=PARIS), True),
        # Enrolled this morning: no anniversary in the first year.
        (dt.datetime(2026, 11, 23, 8, 0, tzinfo=PARIS), False),
    ],
)
def test_enrolment_anniversary_uses_the_program_time_zone(program, enrolled_at, fires):
    member = MemberFactory(program=program, enrolled_at=enrolled_at)
    automation = automation_for(program, on_enrollment_anniversary=True)
    automations.automations_run(now=NOW)
    assert (member.pk in fired(automation)) is fires


@pytest.mark.parametrize(
    ("now", "fires"),
    [
        (dt.datetime(2027, 2, 28, 10, 0, tzinfo=PARIS), True),  # no 29th in 2027: celebrated on the 28th
        (dt.datetime(2027, 3, 1, 10, 0, tzinfo=PARIS), False),
        (dt.datetime(2028, 2, 28, 10, 0, tzinfo=PARIS), False),  # leap year: wait for the 29th
        (dt.datetime(2028, 2, 29, 10, 0, tzinfo=PARIS), True),
    ],
)
def test_a_leap_day_enrolment_is_celebrated_on_28_february_in_other_years(program, now, fires):
    member = MemberFactory(program=program, enrolled_at=dt.datetime(2024, 2, 29, 12, 0, tzinfo=PARIS))
    automation = automation_for(program, on_enrollment_anniversary=True)
    automations.automations_run(now=now)
    assert (member.pk in fired(automation)) is fires


def test_all_set_conditions_must_hold(program, member):
    for days in (10, 20):
        purchase(member, at=NOW - dt.timedelta(days=days))
    both = automation_for(program, name="both", min_orders=2, min_days_inactive=5)
    one_fails = automation_for(program, name="one fails", min_orders=2, min_days_inactive=15)
    automations.automations_run(now=NOW)
    assert fired(both) == {member.pk}
    assert fired(one_fails) == set()


# --------------------------------------------------------------------------------------------
# Actions: tier, email, reward


@pytest.fixture
def silver(program):
    return TierFactory(program=program, name="Silver", position=1, threshold=Decimal("1000000"))


@pytest.fixture
def gold(program):
    return TierFactory(program=program, name="Gold", position=2, threshold=Decimal("2000000"))


def test_set_tier_sets_a_manual_tier_for_the_given_days(program, member, silver):
    automation = automation_for(program, name="VIP", award_points=None, set_tier=silver, set_tier_days=30)
    result = automations.automations_run(now=NOW)
    state = MemberTier.objects.get(member=member)
    assert (state.tier, state.manual_until, state.manual_reason) == (
        silver,
        NOW + dt.timedelta(days=30),
        "Automation: VIP",
    )
    change = TierChange.objects.get(member=member)
    assert (change.kind, change.to_tier, change.reason) == ("manual", silver, "Automation: VIP")
    assert result.tiers == 1
    assert AutomationRun.objects.get(automation=automation).details["tier"]["status"] == "set"


def test_set_tier_without_days_keeps_the_tier_a_year(program, member, silver):
    automation_for(program, award_points=None, set_tier=silver)
    automations.automations_run(now=NOW)
    assert MemberTier.objects.get(member=member).manual_until == NOW + dt.timedelta(days=365)


def test_set_tier_never_lowers_a_member_in_a_higher_tier(program, member, silver, gold):
    MemberTier.objects.create(member=member, tier=gold, since=ENROLLED)
    automation = automation_for(program, award_points=5, set_tier=silver)
    automations.automations_run(now=NOW)
    assert MemberTier.objects.get(member=member).tier == gold
    assert not TierChange.objects.exists()
    run = AutomationRun.objects.get(automation=automation)
    assert run.details["tier"]["status"] == "kept"
    assert run.points == 5  # the other actions still happen


@pytest.fixture
def custom_frame(program):
    """The program's `custom` email template printing the automation's own subject and body
    (the shipped default lays them out in the branded layout the same way)."""
    from notifications.models import EmailTemplate

    return EmailTemplate.objects.create(
        program=program,
        kind="custom",
        language="en",
        subject="{{ subject }}",
        html_body="{{ body|linebreaks }}",
        text_body="{{ body }}",
    )


def body_of(message) -> str:
    """The text part of a sent email without the footer the layout adds."""
    return message.body.split("\n\n--\n")[0]


EMAIL = {
    "email_subject": "Hello {{ member.first_name }}",
    "email_body": "{{ points }} {{ program.points_name }} from {{ program.name }} for {{ member.last_name }}",
}


def test_email_is_rendered_and_sent_after_commit_to_members_with_consent(
    program, custom_frame, django_capture_on_commit_callbacks
):
    consenting = MemberFactory(program=program, enrolled_at=ENROLLED, email_consent=True, last_name="O'Brien")
    refusing = MemberFactory(program=program, enrolled_at=ENROLLED, email_consent=False)
    no_address = MemberFactory(program=program, enrolled_at=ENROLLED, email_consent=True, email="")
    automation = automation_for(program, award_points=30, **EMAIL)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        automations.automations_run(now=NOW)
    assert mail.outbox == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [consenting.email]
    assert message.subject == "Hello Ada"
    assert body_of(message) == f"30 beans from {program.name} for O'Brien"
    assert f"30 beans from {program.name} for O'Brien" in message.alternatives[0][0]
    outbox = EmailMessage.objects.get(member=consenting)
    assert (outbox.kind, outbox.status, outbox.data["subject"]) == ("custom", "sent", "Hello Ada")
    details = {r.member_id: r.details for r in AutomationRun.objects.filter(automation=automation)}
    assert details[consenting.pk]["email"] == "queued in the outbox"
    assert details[refusing.pk]["email"] == "skipped: no email consent"
    assert details[no_address.pk]["email"] == "skipped: no email address"


def test_a_rolled_back_firing_sends_no_email(program, member, django_capture_on_commit_callbacks):
    automation_for(program, trigger="member_enrolled", **EMAIL)
    queued = []

    def fire_then_fail() -> None:
        with transaction.atomic():
            queued.append(automations.automations_on_event(trigger="member_enrolled", member_id=member.pk, now=NOW))
            raise RuntimeError("the caller's transaction fails after the actions")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        fire_then_fail()
    assert queued[0].emails == 1  # the email was prepared...
    assert callbacks == []  # ...but its send was discarded with the transaction
    assert mail.outbox == []
    assert not AutomationRun.objects.exists()
    assert not LedgerEntry.objects.exists()


def test_reward_action_gives_a_free_coupon_once_per_firing(program, member):
    from rewards.models import Redemption
    from tests.rewards.factories import RewardFactory

    reward = RewardFactory(program=program, name="Free coffee", cost_points=300, stock=5)
    automation = automation_for(program, name="Free coffee", award_points=None, reward_id=reward.pk)
    automations.automations_run(now=NOW)
    automations.automations_run(now=NOW)
    coupon = Redemption.objects.get(member=member)
    assert (coupon.reward_id, coupon.points, coupon.entry_id, coupon.status) == (reward.pk, 0, None, "issued")
    details = AutomationRun.objects.get(automation=automation).details["reward"]
    assert details == {"id": reward.pk, "status": "issued", "code": coupon.code, "value": "5.0000", "expires_at": None}
    assert not LedgerEntry.objects.filter(member=member, kind="redeem").exists()
    reward.refresh_from_db()
    assert reward.issued_count == 1


def test_a_refused_reward_is_recorded_and_the_other_actions_stand(program, member):
    from rewards.models import Redemption
    from tests.rewards.factories import RewardFactory

    reward = RewardFactory(program=program, stock=0)
    automation = automation_for(program, name="Points and a gift", award_points=10, reward_id=reward.pk)
    automations.automations_run(now=NOW)
    run = AutomationRun.objects.get(automation=automation)
    assert run.details["reward"] == {"id": reward.pk, "status": "refused", "reason": "out_of_stock"}
    assert run.points == 10
    assert not Redemption.objects.exists()
    member.refresh_from_db()
    assert member.available == 10


# --------------------------------------------------------------------------------------------
# Periods


@pytest.mark.parametrize(
    ("period", "now", "key"),
    [
        ("once", NOW, "once"),
        ("year", NOW, "2026"),
        ("month", NOW, "2026-11"),
        ("week", NOW, "2026-W48"),
        ("day", NOW, "2026-11-23"),
        # The program's day: 23:30 UTC on 31 December is already 2027 in Paris.
        ("year", dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC), "2027"),
        ("day", dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.UTC), "2026-11-24"),
        # ISO weeks: 1 January 2027 is in week 53 of 2026.
        ("week", dt.datetime(2027, 1, 1, 12, 0, tzinfo=PARIS), "2026-W53"),
    ],
)
def test_period_keys_follow_the_program_calendar(program, period, now, key):
    automation = Automation(program=program, period=period)
    assert automations.period_key(automation=automation, program=program, now=now) == key


@pytest.mark.parametrize(
    ("period", "same_period", "next_period"),
    [
        ("day", NOW + dt.timedelta(hours=12), NOW + dt.timedelta(days=1)),
        ("week", NOW + dt.timedelta(days=6), NOW + dt.timedelta(days=7)),
        ("month", NOW + dt.timedelta(days=7), dt.datetime(2026, 12, 1, 0, 5, tzinfo=PARIS)),
        ("year", dt.datetime(2026, 12, 31, 23, 0, tzinfo=PARIS), dt.datetime(2027, 1, 1, 0, 5, tzinfo=PARIS)),
    ],
)
def test_an_automation_fires_once_per_period_and_again_in_the_next(program, member, period, same_period, next_period):
    automation = automation_for(program, period=period)
    assert automations.automations_run(now=NOW).runs == 1
    assert automations.automations_run(now=same_period).runs == 0
    assert automations.automations_run(now=next_period).runs == 1
    assert AutomationRun.objects.filter(automation=automation, member=member).count() == 2
    member.refresh_from_db()
    assert member.available == 20


def test_once_means_once_ever(program, member):
    automation_for(program, period="once")
    automations.automations_run(now=NOW)
    assert automations.automations_run(now=NOW + dt.timedelta(days=800)).runs == 0
    assert LedgerEntry.objects.count() == 1


# --------------------------------------------------------------------------------------------
# Idempotency, concurrency, crashes


def test_running_twice_with_the_same_moment_changes_nothing_the_second_time(program, member, silver):
    others = MemberFactory.create_batch(4, program=program, enrolled_at=ENROLLED)
    purchase(others[0], at=NOW - dt.timedelta(days=1))
    automation_for(program, name="Points", award_points=10)
    automation_for(program, name="Tier", award_points=None, set_tier=silver, min_orders=1)
    automation_for(program, name="Reward", award_points=None, reward_id=7, period="day")

    first = automations.automations_run(now=NOW, chunk_size=2)
    after_first = snapshot()
    second = automations.automations_run(now=NOW, chunk_size=2)

    assert (first.runs, first.points, first.tiers) == (5 + 1 + 5, 50, 1)
    assert (second.runs, second.points, second.tiers) == (0, 0, 0)
    assert snapshot() == after_first


def test_a_crash_in_a_chunk_rolls_back_only_that_chunk_and_a_rerun_completes(program, monkeypatch):
    members = MemberFactory.create_batch(5, program=program, enrolled_at=ENROLLED)
    automation = automation_for(program)
    failing = members[3].pk
    real_earn = ledger.points_earn

    def earn(**kwargs):
        if kwargs["member_id"] == failing:
            raise RuntimeError("crash")
        return real_earn(**kwargs)

    monkeypatch.setattr(ledger, "points_earn", earn)
    with pytest.raises(RuntimeError):
        automations.automations_run(now=NOW, chunk_size=2)
    # Chunk 1 (members 0, 1) committed; chunk 2 (members 2, 3) rolled back whole.
    assert fired(automation) == {members[0].pk, members[1].pk}
    assert set(LedgerEntry.objects.values_list("member_id", flat=True)) == {members[0].pk, members[1].pk}

    monkeypatch.setattr(ledger, "points_earn", real_earn)
    result = automations.automations_run(now=NOW, chunk_size=2)
    assert result.runs == 3
    assert fired(automation) == {m.pk for m in members}
    assert LedgerEntry.objects.count() == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_concurrent_daily_runs_fire_each_member_once():
    program = ProgramFactory(timezone="Europe/Paris", expiry_days=None)
    members = MemberFactory.create_batch(30, program=program, enrolled_at=ENROLLED)
    automation = automation_for(program, award_points=10)

    results = run_together(4, lambda i: automations.automations_run(now=NOW, chunk_size=7).runs)

    assert all(kind == "ok" for kind, _ in results), results
    assert sum(runs for _, runs in results) == 30
    assert fired(automation) == {m.pk for m in members}
    assert LedgerEntry.objects.count() == 30
    assert set(Member.objects.values_list("available", flat=True)) == {10}


# --------------------------------------------------------------------------------------------
# Event triggers (the receivers run on commit)


def test_activity_trigger_fires_for_the_matching_activity_type(program, member, django_capture_on_commit_callbacks):
    review = automation_for(program, trigger="activity", activity_type="review", period="day", award_points=5)
    purchase_one = automation_for(program, trigger="activity", activity_type="purchase", award_points=50)
    with django_capture_on_commit_callbacks(execute=True):
        services.activity_report(program=program, member=member, type="review", occurred_at=NOW, now=NOW)
    assert fired(review) == {member.pk}
    assert fired(purchase_one) == set()
    assert AutomationRun.objects.get(automation=review).period_key == "2026-11-23"


def test_activity_trigger_evaluates_the_conditions_for_that_member(program, member, django_capture_on_commit_callbacks):
    second_order = automation_for(program, trigger="activity", activity_type="purchase", min_orders=2)
    with django_capture_on_commit_callbacks(execute=True):
        services.activity_report(
            program=program, member=member, type="purchase", order_id="a", amount=10, occurred_at=NOW, now=NOW
        )
    assert fired(second_order) == set()
    with django_capture_on_commit_callbacks(execute=True):
        services.activity_report(
            program=program, member=member, type="purchase", order_id="b", amount=10, occurred_at=NOW, now=NOW
        )
    assert fired(second_order) == {member.pk}


def test_member_enrolled_trigger_fires_on_enrolment(program, django_capture_on_commit_callbacks):
    welcome = automation_for(program, trigger="member_enrolled", period="once", award_points=15)
    with django_capture_on_commit_callbacks(execute=True):
        member, _ = ledger.member_enrol(program=program, external_id="new-1", email="n@example.com")
    assert fired(welcome) == {member.pk}
    assert LedgerEntry.objects.filter(member=member, reason=welcome.name).get().points == 15


def test_tier_changed_trigger_fires_when_the_tier_changes(program, member, silver, django_capture_on_commit_callbacks):
    congrats = automation_for(program, trigger="tier_changed", tiers=[silver], period="once")
    with django_capture_on_commit_callbacks(execute=True):
        tier_services.tier_set_manual(
            member=member, tier=silver, until=NOW + dt.timedelta(days=30), reason="x", now=NOW
        )
    assert fired(congrats) == {member.pk}


def test_the_daily_job_ignores_event_automations_and_events_ignore_daily_ones(program, member):
    on_enrol = automation_for(program, trigger="member_enrolled")
    daily = automation_for(program, name="daily")
    automations.automations_run(now=NOW)
    assert fired(on_enrol) == set()
    automations.automations_on_event(trigger="member_enrolled", member_id=member.pk, now=NOW + dt.timedelta(days=400))
    assert fired(on_enrol) == {member.pk}
    assert AutomationRun.objects.filter(automation=daily).count() == 1


def test_an_event_without_automations_costs_one_query(program, member, django_assert_num_queries):
    automation_for(program, trigger="activity", activity_type="review")
    with django_assert_num_queries(1):
        result = automations.automations_on_event(trigger="activity", member_id=member.pk, activity_type="purchase")
    assert result.runs == 0


def test_an_event_fires_at_most_once_per_period(program, member):
    automation = automation_for(program, trigger="activity", activity_type="review", period="week")
    for hours in (0, 1, 48):
        automations.automations_on_event(
            trigger="activity", member_id=member.pk, activity_type="review", now=NOW + dt.timedelta(hours=hours)
        )
    assert AutomationRun.objects.filter(automation=automation).count() == 1


def test_an_unknown_event_trigger_is_refused(member):
    with pytest.raises(Exception, match="not an event trigger"):
        automations.automations_on_event(trigger="daily", member_id=member.pk)


# --------------------------------------------------------------------------------------------
# Ready-made automations, demo, command


def test_ready_made_automations_install_inactive_and_idempotently(program, silver, gold):
    first = automations.automations_install_ready_made(program=program)
    assert [created for _, created in first] == [True, True, True]
    by_kind = {a.ready_made: a for a, _ in first}
    assert not any(a.is_active for a in by_kind.values())
    vip = by_kind["vip_purchase_history"]
    assert (vip.trigger, vip.min_orders, vip.window_days, vip.set_tier, vip.set_tier_days) == (
        "daily",
        5,
        365,
        silver,
        365,
    )
    win_back = by_kind["win_back"]
    assert (win_back.min_days_inactive, win_back.award_points, win_back.period) == (90, 200, "year")
    anniversary = by_kind["anniversary"]
    assert (anniversary.on_enrollment_anniversary, anniversary.award_points) == (True, 100)

    Automation.objects.filter(pk=win_back.pk).update(award_points=300)
    second = automations.automations_install_ready_made(program=program)
    assert [created for _, created in second] == [False, False, False]
    assert Automation.objects.filter(program=program).count() == 3
    assert Automation.objects.get(pk=win_back.pk).award_points == 300  # staff edits kept


def test_ready_made_email_templates_render(program, custom_frame, django_capture_on_commit_callbacks):
    MemberFactory(program=program, enrolled_at=dt.datetime(2024, 11, 23, 9, 0, tzinfo=PARIS), email_consent=True)
    automations.automations_install_ready_made(program=program)
    Automation.objects.filter(program=program).update(is_active=True)
    with django_capture_on_commit_callbacks(execute=True):
        automations.automations_run(now=NOW)
    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == ["Happy anniversary, Ada!", "We miss you, Ada"]
    assert "200 beans" in next(m.body for m in mail.outbox if m.subject.startswith("We miss"))


def test_demo_load_switches_on_the_anniversary_and_leaves_win_back_off_with_an_audience(program, member):
    from tests.rewards.factories import RewardFactory
    from workflows import activation

    gift = RewardFactory(program=program, name="5 off")
    quiet = MemberFactory(program=program, enrolled_at=NOW - dt.timedelta(days=2 * 365))
    line = automations.automations_demo_load(program=program, now=NOW)
    assert line.startswith("Automations: 3 ready-made installed")
    active = set(Automation.objects.filter(program=program, is_active=True).values_list("ready_made", flat=True))
    assert active == {"anniversary"}
    assert not AutomationRun.objects.filter(automation__ready_made="win_back").exists()
    win_back = Automation.objects.get(program=program, ready_made="win_back")
    assert win_back.reward_id == gift.pk
    preview = activation.activation_preview(automation=win_back, now=NOW)
    assert quiet.pk in {m["id"] for m in preview.sample}
    assert preview.coupons == preview.members >= 1
    runs = AutomationRun.objects.count()
    assert runs >= 1

    again = automations.automations_demo_load(program=program, now=NOW)
    assert "0 ready-made installed (3 already there)" in again
    assert "0 firings" in again
    assert AutomationRun.objects.count() == runs


def test_run_workflows_command_runs_as_of_now_and_is_idempotent(program, member):
    automation_for(program, award_points=10)
    out = StringIO()
    call_command("run_workflows", "--now", "2026-11-23T10:00:00+01:00", stdout=out)
    assert out.getvalue().startswith("1 automation firings of 1 daily automations: 10 points")
    assert AutomationRun.objects.get().fired_at == NOW
    out = StringIO()
    call_command("run_workflows", "--now", "2026-11-23T10:00:00+01:00", stdout=out)
    assert out.getvalue().startswith("0 automation firings")
    assert LedgerEntry.objects.count() == 1


def test_run_workflows_command_refuses_a_naive_moment(db):
    with pytest.raises(CommandError):
        call_command("run_workflows", "--now", "2026-11-23T10:00:00")


def test_no_automation_for_an_event_is_remembered_until_one_is_saved(program, member, django_assert_num_queries):
    """The nightly tier run sends a tier_changed per member: without automations for it, the
    receiver must not query the database every time."""
    automations.event_automations_forget()
    with django_assert_num_queries(1):
        automations.automations_on_event(trigger="tier_changed", member_id=member.pk, program_id=program.pk, now=NOW)
    with django_assert_num_queries(0):
        for _ in range(100):
            automations.automations_on_event(
                trigger="tier_changed", member_id=member.pk, program_id=program.pk, now=NOW
            )
    automation = automation_for(program, trigger="tier_changed", period="once")  # saving forgets the answer
    automations.automations_on_event(trigger="tier_changed", member_id=member.pk, program_id=program.pk, now=NOW)
    assert fired(automation) == {member.pk}


def test_the_email_shows_the_coupon_issued_in_the_same_firing(
    program, member, custom_frame, django_capture_on_commit_callbacks
):
    from rewards.models import Redemption, Reward
    from tests.rewards.factories import RewardFactory

    credit = RewardFactory(
        program=program,
        name="Store credit",
        kind=Reward.Kind.POINTS_FOR_AMOUNT,
        cost_points=None,
        value=Decimal("0.01"),
        points_step=100,
        points_min=500,
        valid_days=30,
    )
    automation_for(
        program,
        award_points=None,
        reward_id=credit.pk,
        email_subject="A gift for you, {{ member.first_name }}",
        email_body=(
            "Code {{ coupon.code }}: {{ coupon.reward }}, {{ coupon.value }} off "
            "until {{ coupon.valid_until|date:'j F Y' }}."
        ),
    )
    with django_capture_on_commit_callbacks(execute=True):
        automations.automations_run(now=NOW)
    coupon = Redemption.objects.get(member=member)
    assert body_of(mail.outbox[0]) == f"Code {coupon.code}: Store credit, 5.00 off until 23 December 2026."


def test_an_email_showing_a_coupon_is_not_sent_when_the_reward_is_refused(
    program, member, django_capture_on_commit_callbacks
):
    from tests.rewards.factories import RewardFactory

    reward = RewardFactory(program=program, stock=0)
    automation = automation_for(
        program, reward_id=reward.pk, email_subject="Your gift", email_body="Your code: {{ coupon.code }}"
    )
    with django_capture_on_commit_callbacks(execute=True):
        automations.automations_run(now=NOW)
    assert mail.outbox == []
    run = AutomationRun.objects.get(automation=automation)
    assert run.details["email"] == "skipped: the email shows a coupon and the reward was refused"
    assert run.points == 10


def test_the_email_is_rendered_from_plain_data_only(program, member, custom_frame, django_capture_on_commit_callbacks):
    """Model instances would let a template call methods or follow relations to other rows."""
    automation_for(
        program,
        email_subject="Hi",
        email_body="{{ member.program.name }}|{{ member.delete }}|{{ program.members.count }}|{{ member.first_name }}",
    )
    with django_capture_on_commit_callbacks(execute=True):
        automations.automations_run(now=NOW)
    assert body_of(mail.outbox[0]) == f"|||{member.first_name}"
    assert Member.objects.filter(pk=member.pk).exists()


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ member.first_name }} {{ points }} {{ coupon.code }} {{ tier.name }}", None),
        ("{% if coupon %}{{ coupon.code|default:member.first_name }}{% endif %}", None),
        ("{% for n in member.first_name %}{{ n }}{% endfor %}{% with x=program.name %}{{ x }}{% endwith %}", None),
        ("{{ member.balance }}", "Unknown variable(s): member.balance."),
        ("{{ coupon.code|default:prize }}", "Unknown variable(s): prize."),
        ("{% if member.program.slug %}x{% endif %}", "Unknown variable(s): member.program.slug."),
        ("{{ member }}", "{{ member }} prints nothing useful: name a field, e.g. member.first_name."),
        ("{% include 'admin/base.html' %}", "The {% include %} tag cannot be used in an email."),
        ("{% if %}", "Template error:"),
    ],
)
def test_email_template_problems_names_what_is_wrong(source, problem):
    variables = automations.email_variables(award_points=True, set_tier=True, reward=True)
    problems = automations.email_template_problems(source, variables)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problems[0].startswith(problem)


def test_email_variables_follow_the_actions():
    only_points = automations.email_variables(award_points=True, set_tier=False, reward=False)
    assert set(only_points) == {"member", "program", "automation", "points"}
    only_reward = automations.email_variables(award_points=False, set_tier=False, reward=True)
    assert set(only_reward) == {"member", "program", "automation", "coupon"}
