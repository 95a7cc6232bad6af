"""Before an automation is switched on (`workflows.activation`): the preview of its audience and
cost is exactly what a run then does, it writes nothing, its arithmetic, and switching on needs a
confirmation that still holds."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty.models import Activity, Member, StaffAction
from rewards.models import Redemption, Reward
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.rewards.factories import RewardFactory
from tests.tiers.factories import TierFactory
from tiers import services as tier_services
from tiers.models import MemberTier
from workflows import activation, automations
from workflows.models import Automation, AutomationRun

from .test_automations import snapshot

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=PARIS)


@pytest.fixture
def program(db):
    return ProgramFactory(timezone="Europe/Paris", expiry_days=None, currency="EUR", point_value=Decimal("0.01"))


def inactive(program, **fields) -> Automation:
    values = {
        "name": "Win-back",
        "is_active": False,
        "trigger": Automation.Trigger.DAILY,
        "period": Automation.Period.YEAR,
        "min_days_inactive": 90,
        "award_points": 100,
        **fields,
    }
    tiers = values.pop("tiers", [])
    automation = Automation.objects.create(program=program, **values)
    automation.tiers.set(tiers)
    return automation


def lapsed(program, count: int, **fields) -> list[Member]:
    """`count` members whose last activity was 200 days ago."""
    members = [MemberFactory(program=program, enrolled_at=NOW - dt.timedelta(days=400), **fields) for _ in range(count)]
    Activity.objects.bulk_create(
        Activity(program=program, member=m, type="store_visit", occurred_at=NOW - dt.timedelta(days=200))
        for m in members
    )
    return members


def generated_members(program, seed: int, silver, gold) -> None:
    """A varied population: enrolment age, last activity, status, consent, email, tier, and a
    few served already this period (runs of the automation with the current key)."""
    rng = random.Random(seed)
    for i in range(60):
        enrolled = NOW - dt.timedelta(days=rng.choice([5, 50, 120, 400, 900]))
        member = MemberFactory(
            program=program,
            enrolled_at=enrolled,
            status=rng.choice(["active"] * 5 + ["blocked"]),
            email_consent=rng.random() < 0.6,
            email=rng.choice([f"m{seed}-{i}@example.com"] * 4 + [""]),
        )
        last = rng.choice([None, 10, 89, 91, 150, 700])
        if last is not None and NOW - dt.timedelta(days=last) >= enrolled:
            Activity.objects.create(
                program=program, member=member, type="store_visit", occurred_at=NOW - dt.timedelta(days=last)
            )
        tier = rng.choice([None, None, silver, gold])
        if tier is not None:
            MemberTier.objects.create(member=member, tier=tier, since=enrolled)
    # Another program's lapsed members never count.
    lapsed(ProgramFactory(), 3)


@pytest.fixture
def silver(program):
    return TierFactory(program=program, name="Silver", position=1)


@pytest.fixture
def gold(program):
    return TierFactory(program=program, name="Gold", position=2)


def served_already(automation: Automation, members: list[Member]) -> None:
    key = automations.period_key(automation=automation, program=automation.program, now=NOW)
    AutomationRun.objects.bulk_create(
        AutomationRun(automation=automation, member=m, period_key=key, fired_at=NOW - dt.timedelta(days=1))
        for m in members
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "config",
    [
        {"min_days_inactive": 90},
        {"min_days_inactive": 90, "tiers": "silver", "email_transactional": True},
        {"min_days_inactive": None, "min_days_enrolled": 100, "set_tier": "silver", "award_points": 0},
    ],
    ids=["win-back", "tier-condition", "set-tier"],
)
def test_the_preview_names_exactly_the_members_a_run_then_acts_on(program, silver, gold, seed, config):
    generated_members(program, seed, silver, gold)
    fields = dict(config)
    if fields.get("tiers") == "silver":
        fields["tiers"] = [silver]
    if fields.get("set_tier") == "silver":
        fields["set_tier"] = silver
    reward = RewardFactory(program=program, value=Decimal("5.00"))
    automation = inactive(
        program, reward_id=reward.pk, email_subject="Hi", email_body="Come back, {{ member.first_name }}", **fields
    )
    served_already(automation, list(Member.objects.filter(program=program).order_by("?")[:5]))
    preview = activation.activation_preview(automation=automation, now=NOW, sample_size=1000)
    assert 0 < preview.members < Member.objects.filter(program=program).count()

    Automation.objects.filter(pk=automation.pk).update(is_active=True)
    before = set(AutomationRun.objects.filter(automation=automation).values_list("member_id", flat=True))
    result = automations.automations_run(now=NOW, program=program)

    acted_on = set(AutomationRun.objects.filter(automation=automation).values_list("member_id", flat=True)) - before
    assert {m["id"] for m in preview.sample} == acted_on
    assert preview.members == len(acted_on) == result.runs
    assert preview.points == result.points == (automation.award_points or 0) * len(acted_on)
    assert preview.coupons == Redemption.objects.filter(reward=reward).count() == len(acted_on)
    assert preview.tiers == result.tiers
    reachable = Member.objects.filter(pk__in=acted_on).exclude(email="")
    if not automation.email_transactional:
        reachable = reachable.filter(email_consent=True)
    assert preview.emails == reachable.count()


def test_the_preview_writes_nothing(program, silver):
    lapsed(program, 5)
    reward = RewardFactory(program=program, stock=3)
    automation = inactive(program, reward_id=reward.pk, set_tier=silver, email_subject="Hi", email_body="Back!")
    before = snapshot()
    with CaptureQueriesContext(connection) as queries:
        preview = activation.activation_preview(automation=automation, now=NOW)
    assert preview.members == 5
    assert snapshot() == before
    reward.refresh_from_db()
    assert reward.issued_count == 0
    statements = [q["sql"].lstrip().split()[0].upper() for q in queries.captured_queries]
    assert set(statements) <= {"SELECT", "WITH"}, statements
    assert "FOR UPDATE" not in " ".join(q["sql"] for q in queries.captured_queries).upper()


def test_the_cost_of_the_win_back_story(program):
    """118 lapsed members, 100 points and a 5.00 EUR coupon each: 11,800 points and 590.00 EUR."""
    lapsed(program, 118)
    lapsed(program, 4, status="blocked")
    reward = RewardFactory(program=program, name="5 EUR off", kind=Reward.Kind.AMOUNT_OFF, value=Decimal("5.00"))
    automation = inactive(program, reward_id=reward.pk)
    preview = activation.activation_preview(automation=automation, now=NOW)
    assert (preview.members, preview.points, preview.coupons) == (118, 11_800, 118)
    assert preview.points_value == Decimal("118.00")  # 11,800 x 0.01
    assert (preview.coupon_value_each, preview.coupons_value) == (Decimal("5.00"), Decimal("590.00"))
    assert preview.sentence() == (
        "This will give 11,800 points (worth 118.00 EUR) to 118 members and issue 118 coupons worth 590.00 EUR "
        "at the next daily run."
    )
    assert len(preview.sample) == activation.SAMPLE_SIZE
    assert [m["id"] for m in preview.sample] == sorted(m["id"] for m in preview.sample)
    data = preview.as_data()
    assert (data["points_value"], data["coupons_value"], data["figures"]["members"]) == ("118.00", "590.00", 118)


@pytest.mark.parametrize(
    ("reward_fields", "point_value", "each"),
    [
        ({"kind": "amount_off", "value": Decimal("7.50")}, Decimal("0"), Decimal("7.50")),
        # Points as money off: the gift is worth its minimum points at the reward's value per point.
        (
            {"kind": "points_for_amount", "value": Decimal("0.02"), "cost_points": None, "points_min": 250},
            Decimal("0"),
            Decimal("5.00"),
        ),
        ({"kind": "percent_off", "value": Decimal("10"), "cost_points": 800}, Decimal("0.005"), Decimal("4.00")),
        ({"kind": "percent_off", "value": Decimal("10"), "cost_points": 800}, Decimal("0"), None),
        ({"kind": "free_shipping", "value": None, "cost_points": None}, Decimal("0.01"), None),
    ],
)
def test_a_coupons_money_value_comes_from_the_reward_or_its_points_price(program, reward_fields, point_value, each):
    program.point_value = point_value
    program.save()
    lapsed(program, 3)
    reward = RewardFactory(program=program, **reward_fields)
    preview = activation.activation_preview(automation=inactive(program, reward_id=reward.pk), now=NOW)
    assert preview.coupons == 3
    assert preview.coupon_value_each == each
    assert preview.coupons_value == (None if each is None else each * 3)
    assert preview.points_value == (Decimal(300) * point_value if point_value else None)


def test_stock_and_an_unavailable_reward_limit_the_coupons(program):
    lapsed(program, 4)
    short = RewardFactory(program=program, stock=3, issued_count=1)
    preview = activation.activation_preview(automation=inactive(program, reward_id=short.pk), now=NOW)
    assert preview.coupons == 2
    assert "Only 2 left in stock" in preview.coupon_note
    gone = RewardFactory(program=program, is_active=False)
    automation = inactive(program, name="Gift", reward_id=gone.pk, email_subject="Gift", email_body="{{ coupon.code }}")
    preview = activation.activation_preview(automation=automation, now=NOW)
    assert (preview.coupons, preview.emails) == (0, 0)
    assert "not offered" in preview.coupon_note


def test_an_event_automation_says_it_gives_nothing_at_once(program):
    lapsed(program, 2)
    automation = inactive(
        program, trigger=Automation.Trigger.ACTIVITY, activity_type="review", min_days_inactive=None, award_points=50
    )
    preview = activation.activation_preview(automation=automation, now=NOW)
    assert (preview.acts_now, preview.members, preview.points) == (False, 2, 100)
    assert "gives nothing at once" in preview.sentence()
    assert "each activity of one of them gives 50 points" in preview.sentence()


def test_an_unsaved_automation_with_tiers_from_a_form_is_previewed(program, silver):
    in_silver = lapsed(program, 2)
    lapsed(program, 3)
    for member in in_silver:
        MemberTier.objects.create(member=member, tier=silver, since=NOW)
    unsaved = Automation(program=program, name="Draft", period="year", min_days_inactive=90, award_points=10)
    preview = activation.activation_preview(automation=unsaved, now=NOW, tier_ids=[silver.pk])
    assert preview.members == 2
    assert preview.automation_id is None


def test_the_set_tier_count_never_counts_members_in_a_higher_tier(program, silver, gold):
    members = lapsed(program, 3)
    MemberTier.objects.create(member=members[0], tier=gold, since=NOW)
    tier_services.tier_set_manual(member=members[1], tier=silver, until=NOW + dt.timedelta(days=900), reason="x")
    automation = inactive(program, set_tier=silver, set_tier_days=365, award_points=None)
    preview = activation.activation_preview(automation=automation, now=NOW)
    assert (preview.members, preview.tiers, preview.tier) == (3, 1, "Silver")


# --------------------------------------------------------------------------------------------
# Switching on


def test_switching_on_without_confirmation_is_refused_with_the_preview(program):
    lapsed(program, 7)
    automation = inactive(program)
    with pytest.raises(activation.ConfirmationRequired) as refused:
        activation.automation_activate(automation_id=automation.pk, actor=StaffFactory(), confirm=False, now=NOW)
    assert refused.value.details["preview"]["members"] == 7
    assert refused.value.details["preview"]["points"] == 700
    automation.refresh_from_db()
    assert not automation.is_active
    assert not StaffAction.objects.exists()


def test_switching_on_with_confirmation_is_audited_with_the_figures(program):
    lapsed(program, 7)
    automation = inactive(program)
    staff = StaffFactory()
    result = activation.automation_activate(
        automation_id=automation.pk, actor=staff, confirm=True, seen={"members": 7, "points": 700}, now=NOW
    )
    assert result.activated
    automation.refresh_from_db()
    assert automation.is_active
    audit = StaffAction.objects.get()
    assert (audit.action, audit.actor, audit.program, audit.member) == ("automation_activated", staff, program, None)
    assert (audit.details["members"], audit.details["points"]) == (7, 700)
    assert audit.details["seen"]["members"] == 7
    assert audit.details["points_value"] == "7.00"
    # Switching on again changes nothing and records nothing.
    again = activation.automation_activate(automation_id=automation.pk, actor=staff, confirm=True, now=NOW)
    assert not again.activated
    assert StaffAction.objects.count() == 1


@pytest.mark.parametrize(
    ("seen", "now_count", "asks_again"),
    [(118, 118, False), (118, 123, False), (118, 124, True), (118, 113, False), (118, 112, True), (10, 11, True),
     (0, 1, True), (0, 0, False)],
)  # fmt: skip
def test_a_changed_audience_asks_again_beyond_the_tolerance(program, seen, now_count, asks_again):
    lapsed(program, now_count)
    automation = inactive(program)
    figures = {"members": seen, "points": seen * 100}
    if asks_again:
        with pytest.raises(activation.AudienceChanged) as changed:
            activation.automation_activate(
                automation_id=automation.pk, actor=StaffFactory(), confirm=True, seen=figures
            )
        assert changed.value.details["preview"]["members"] == now_count
        assert "members" in changed.value.details["changed"]
        automation.refresh_from_db()
        assert not automation.is_active
    else:
        activation.automation_activate(automation_id=automation.pk, actor=StaffFactory(), confirm=True, seen=figures)
        automation.refresh_from_db()
        assert automation.is_active


def test_a_changed_cost_per_member_asks_again(program):
    lapsed(program, 10)
    automation = inactive(program, award_points=100)
    seen = activation.activation_preview(automation=automation, now=NOW).figures()
    Automation.objects.filter(pk=automation.pk).update(award_points=500)
    with pytest.raises(activation.AudienceChanged) as changed:
        activation.automation_activate(automation_id=automation.pk, actor=StaffFactory(), confirm=True, seen=seen)
    assert changed.value.details["changed"] == ["points"]


def test_switching_off_is_audited_and_needs_no_confirmation(program):
    automation = inactive(program, is_active=True)
    staff = StaffFactory()
    assert activation.automation_deactivate(automation_id=automation.pk, actor=staff)
    assert not activation.automation_deactivate(automation_id=automation.pk, actor=staff)
    automation.refresh_from_db()
    assert not automation.is_active
    assert list(StaffAction.objects.values_list("action", flat=True)) == ["automation_stopped"]


def test_an_unknown_automation_is_not_found(program):
    from loyalty import errors

    with pytest.raises(errors.NotFound):
        activation.automation_activate(automation_id=999_999, actor=StaffFactory(), confirm=True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_concurrent_confirmations_switch_on_once_and_audit_once():
    from tests.loyalty.test_concurrency import run_together

    program = ProgramFactory(timezone="Europe/Paris", expiry_days=None)
    lapsed(program, 6)
    automation = inactive(program)
    staff = [StaffFactory() for _ in range(4)]

    results = run_together(
        4,
        lambda i: (
            activation.automation_activate(
                automation_id=automation.pk, actor=staff[i], confirm=True, seen={"members": 6, "points": 600}, now=NOW
            ).activated
        ),
    )

    assert all(kind == "ok" for kind, _ in results), results
    assert sorted(value for _, value in results) == [False, False, False, True]
    assert StaffAction.objects.filter(action="automation_activated").count() == 1
    automation.refresh_from_db()
    assert automation.is_active
