import datetime as dt
from decimal import Decimal

import pytest
from django.core.management import call_command

from loyalty import errors
from loyalty.models import Activity, Program
from loyalty.services import points_earn
from tests.loyalty.factories import MemberFactory, ProgramFactory, PurchaseFactory
from tiers import selectors, services
from tiers.models import MemberTier, TierChange
from tiers.signals import tier_changed
from tiers.tasks import evaluate_tiers_task

from .factories import TierFactory

DAY = dt.timedelta(days=1)


def earn(member, points, occurred_at):
    points_earn(program=member.program, member_id=member.pk, points=points, occurred_at=occurred_at, now=occurred_at)


def tier_of(member):
    state = MemberTier.objects.filter(member=member).first()
    return state.tier if state else None


@pytest.fixture
def received():
    calls = []

    def handler(sender, **kwargs):
        calls.append(kwargs)

    tier_changed.connect(handler)
    yield calls
    tier_changed.disconnect(handler)


def test_posting_points_that_cross_a_threshold_upgrades_at_once(member, tiers, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        points_earn(program=member.program, member_id=member.pk, points=150)
    assert tier_of(member).name == "Silver"
    change = TierChange.objects.get(member=member)
    assert change.kind == TierChange.Kind.UPGRADE
    assert change.from_tier is None
    assert change.metric_value == Decimal("150")


def test_points_of_an_activity_are_left_to_the_activity_service(member, tiers, django_capture_on_commit_callbacks):
    """The activity service evaluates the tier in its own transaction; the receiver must not
    evaluate the same posting a second time."""
    purchase = PurchaseFactory(member=member, program=member.program)
    with django_capture_on_commit_callbacks(execute=True):
        points_earn(program=member.program, member_id=member.pk, points=150, activity=purchase)
    assert tier_of(member) is None
    assert not TierChange.objects.filter(member=member).exists()


def test_the_online_evaluation_never_downgrades(member, tiers, now):
    earn(member, 600, now)
    assert services.tier_evaluate_member(member=member, now=now).to_tier.name == "Gold"
    # 40 days later the rolling window is empty, but only the nightly run may downgrade.
    assert services.tier_evaluate_member(member=member, now=now + 40 * DAY) is None
    assert tier_of(member).name == "Gold"


def test_the_tier_change_signal_is_sent_only_after_commit(
    member, tiers, now, received, django_capture_on_commit_callbacks
):
    earn(member, 150, now)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        change = services.tier_evaluate_member(member=member, now=now)
    assert received == []
    for callback in callbacks:
        callback()
    assert len(received) == 1
    assert received[0]["change"] == change
    assert received[0]["member_id"] == member.pk
    assert received[0]["program"] == member.program


def test_the_nightly_run_keeps_a_tier_until_its_retention_ends(member, tiers, now):
    earn(member, 600, now)
    services.tier_evaluate_member(member=member, now=now)

    result = services.tiers_evaluate(now=now + 40 * DAY)  # window empty, retention (60 days) running
    assert result.downgrades == 0
    assert tier_of(member).name == "Gold"

    result = services.tiers_evaluate(now=now + 61 * DAY)
    assert result.downgrades == 1
    assert tier_of(member) is None
    change = TierChange.objects.filter(member=member).latest("id")
    assert change.kind == TierChange.Kind.DOWNGRADE
    assert change.from_tier.name == "Gold"
    assert change.to_tier is None


def test_the_nightly_downgrade_goes_to_the_highest_tier_still_reached(member, tiers, now):
    earn(member, 600, now - 50 * DAY)
    services.tier_evaluate_member(member=member, now=now - 50 * DAY)
    MemberTier.objects.filter(member=member).update(retain_until=now - DAY)
    earn(member, 120, now - DAY)

    result = services.tiers_evaluate(now=now)

    assert result.downgrades == 1
    assert tier_of(member).name == "Silver"


def test_a_second_nightly_run_changes_nothing(program, tiers, now, received, django_capture_on_commit_callbacks):
    members = [MemberFactory(program=program) for _ in range(5)]
    for i, member in enumerate(members[1:], start=1):
        earn(member, 200 * i, now - DAY)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.tiers_evaluate(now=now, chunk_size=2)
    assert (first.upgrades, first.chunks) == (4, 3)
    assert len(received) == 4
    rows = TierChange.objects.count()

    second = services.tiers_evaluate(now=now, chunk_size=2)

    assert second.members == 0
    assert TierChange.objects.count() == rows
    assert [tier_of(m) and tier_of(m).name for m in members] == [None, "Silver", "Silver", "Gold", "Gold"]


def test_the_nightly_metric_equals_the_member_selector(program, tiers, now):
    member = MemberFactory(program=program)
    earn(member, 80, now - 40 * DAY)  # outside the 30-day window
    earn(member, 90, now - 2 * DAY)
    earn(member, 30, now - DAY)
    assert selectors.member_metric(member=member, now=now) == Decimal("120")
    services.tiers_evaluate(now=now)
    assert TierChange.objects.get(member=member).metric_value == Decimal("120")


def test_a_manual_tier_is_kept_until_its_end_then_evaluated(member, tiers, gold, staff, now):
    earn(member, 150, now)
    change = services.tier_set_manual(
        member=member, tier=gold, until=now + 5 * DAY, reason="VIP guest", actor=staff, now=now
    )
    assert (change.kind, change.actor, change.reason) == (TierChange.Kind.MANUAL, staff, "VIP guest")

    assert services.tier_evaluate_member(member=member, now=now + DAY) is None
    assert services.tiers_evaluate(now=now + DAY).members == 0
    assert tier_of(member).name == "Gold"

    result = services.tiers_evaluate(now=now + 6 * DAY)
    assert result.manual_expired == 1
    state = MemberTier.objects.get(member=member)
    assert state.tier.name == "Silver"
    assert state.manual_until is None
    assert TierChange.objects.filter(member=member).latest("id").kind == TierChange.Kind.MANUAL_EXPIRED
    assert services.tiers_evaluate(now=now + 6 * DAY).members == 0


def test_a_manual_tier_needs_a_reason_and_a_future_end(member, gold, now):
    with pytest.raises(errors.InvalidInput):
        services.tier_set_manual(member=member, tier=gold, until=now + DAY, reason=" ", now=now)
    with pytest.raises(errors.InvalidInput):
        services.tier_set_manual(member=member, tier=gold, until=now - DAY, reason="x", now=now)


def test_a_manual_tier_of_another_program_is_refused(member, now):
    other = TierFactory(program=ProgramFactory())
    with pytest.raises(errors.InvalidInput):
        services.tier_set_manual(member=member, tier=other, until=now + DAY, reason="x", now=now)


def test_the_calendar_year_starts_at_midnight_in_the_program_time_zone(db):
    program = ProgramFactory(timezone="Europe/Paris", tier_window=Program.TierWindow.CALENDAR_YEAR, expiry_days=None)
    TierFactory(program=program, name="Silver", position=1, threshold=Decimal("100"))
    member = MemberFactory(program=program)
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    earn(member, 70, dt.datetime(2025, 12, 31, 22, 30, tzinfo=dt.UTC))  # 23:30 in Paris: last year
    earn(member, 60, dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC))  # 00:30 on 1 January in Paris

    assert selectors.member_metric(member=member, now=now) == Decimal("60")
    assert services.tiers_evaluate(now=now).members == 0
    assert selectors.member_metric(member=member, now=dt.datetime(2025, 12, 31, 23, 59, tzinfo=dt.UTC)) == 60


def test_amount_spent_is_purchases_minus_refunds(db, now):
    program = ProgramFactory(tier_metric=Program.TierMetric.AMOUNT_SPENT, tier_window=Program.TierWindow.LIFETIME)
    TierFactory(program=program, name="Silver", position=1, threshold=Decimal("150"))
    member = MemberFactory(program=program)
    PurchaseFactory(member=member, amount=Decimal("120.50"), occurred_at=now - DAY)
    PurchaseFactory(member=member, amount=Decimal("60"), occurred_at=now - DAY)
    Activity.objects.create(
        program=program, member=member, type=Activity.Type.REFUND, amount=Decimal("20"), occurred_at=now
    )
    assert selectors.member_metric(member=member, now=now) == Decimal("160.50")
    assert services.tiers_evaluate(now=now).upgrades == 1
    assert TierChange.objects.get(member=member).metric_value == Decimal("160.50")


def test_order_count_counts_purchases(db, now):
    program = ProgramFactory(tier_metric=Program.TierMetric.ORDER_COUNT, tier_window=Program.TierWindow.LIFETIME)
    TierFactory(program=program, name="Regular", position=1, threshold=Decimal("2"))
    member = MemberFactory(program=program)
    PurchaseFactory(member=member, occurred_at=now - DAY)
    assert services.tier_evaluate_member(member=member, now=now) is None
    PurchaseFactory(member=member, occurred_at=now)
    assert services.tier_evaluate_member(member=member, now=now).to_tier.name == "Regular"


def test_the_multiplier_is_the_tiers_or_one_without_a_tier(member, tiers, now):
    assert selectors.member_multiplier(member_id=member.pk) == Decimal("1")
    earn(member, 600, now)
    services.tier_evaluate_member(member=member, now=now)
    assert selectors.member_multiplier(member_id=member.pk) == Decimal("2")


def test_progress_names_the_next_tier_and_what_is_missing(member, tiers, now):
    earn(member, 150, now)
    services.tier_evaluate_member(member=member, now=now)
    progress = selectors.member_tier_progress(member=member, now=now)
    assert (progress.tier.name, progress.next_tier.name, progress.needed) == ("Silver", "Gold", Decimal("350"))


def test_the_command_and_the_task_run_the_evaluation_as_of_now(member, tiers, now, capsys):
    earn(member, 150, now)
    call_command("evaluate_tiers", "--now", now.isoformat())
    assert "1 upgrades" in capsys.readouterr().out
    assert evaluate_tiers_task(now=now.isoformat())["members"] == 0
    assert tier_of(member).name == "Silver"


def test_a_failing_tier_evaluation_never_fails_the_posting(
    member, tiers, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def boom(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "tier_evaluate_member", boom)
    with django_capture_on_commit_callbacks(execute=True):
        result = points_earn(program=member.program, member_id=member.pk, points=150)
    assert result.balance.available == 150
    assert "Could not evaluate the tier" in caplog.text


def test_an_inactive_tier_is_never_reached(member, tiers, gold, now):
    gold.is_active = False
    gold.save()
    earn(member, 600, now)
    assert services.tier_evaluate_member(member=member, now=now).to_tier.name == "Silver"
    assert services.tiers_evaluate(now=now).members == 0


def test_tier_create_refuses_a_higher_position_with_a_lower_threshold(program, tiers):
    with pytest.raises(errors.InvalidInput, match="below the threshold of Gold"):
        services.tier_create(program=program, name="Platinum", position=3, threshold=Decimal("400"))
    assert not program.tiers.filter(name="Platinum").exists()


def test_tier_create_refuses_a_lower_position_with_a_higher_threshold(program, tiers):
    with pytest.raises(errors.InvalidInput, match="above the threshold of Silver") as caught:
        services.tier_create(program=program, name="Bronze", position=0, threshold=Decimal("150"))
    assert caught.value.details["field"] == "threshold"
    assert not program.tiers.filter(name="Bronze").exists()


def test_tier_create_accepts_a_tier_in_order_between_two_others(program, tiers):
    services.tier_create(program=program, name="Silver plus", position=3, threshold=Decimal("500"))
    bronze = services.tier_create(program=program, name="Bronze", position=0, threshold=Decimal("100"))
    assert bronze.pk is not None


def test_tier_order_ignores_inactive_tiers(program, tiers):
    program.tiers.filter(name="Gold").update(is_active=False)
    assert services.tier_order_error(program_id=program.pk, position=3, threshold=Decimal("200")) is None
