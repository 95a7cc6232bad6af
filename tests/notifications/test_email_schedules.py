"""The scheduled member emails (notifications.email_schedules): expiry warnings and last
chances, periodic statements, tier-at-risk warnings. Who gets them, with which data, once,
on the program's local days."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import call_command

from loyalty import services as ledger
from loyalty.models import Member
from notifications import email_context, email_schedules, emails
from notifications.models import EmailMessage, EmailScheduleRun, EmailSettings
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.rewards.factories import RewardFactory
from tests.tiers.factories import TierFactory
from tiers.models import MemberTier

pytestmark = pytest.mark.django_db(transaction=True)

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def earn(program, member, points: int, *, last_day: dt.date) -> None:
    """A lot of `points` whose last valid local day is `last_day` (the program's expiry_days
    count from the day it was earned, at local noon)."""
    earned_on = last_day - dt.timedelta(days=program.expiry_days)
    occurred = dt.datetime.combine(earned_on, dt.time(12), tzinfo=program.tz)
    ledger.points_earn(
        program=program, member_id=member.pk, points=points, reason="test", occurred_at=occurred, now=occurred
    )


def messages(kind: str, **filters):
    return list(EmailMessage.objects.filter(kind=kind, **filters).order_by("member_id", "source"))


@pytest.fixture
def paris(db):
    return ProgramFactory(timezone="Europe/Paris", expiry_days=365)


@pytest.fixture
def utc_program(db):
    return ProgramFactory(timezone="UTC", expiry_days=365)


def settings_for(program, **fields) -> EmailSettings:
    row, _ = EmailSettings.objects.update_or_create(program=program, defaults=fields)
    emails.settings_forget()
    return row


# --------------------------------------------------------------------------------------------
# points_expiring


def test_expiry_warning_lists_the_lots_of_the_window_and_goes_to_members_with_an_address(paris):
    now = at("2026-03-01T09:00:00+00:00")  # 10:00 in Paris, 1 March
    ada = MemberFactory(program=paris, email_consent=False)  # transactional: no consent needed
    earn(paris, ada, 100, last_day=dt.date(2026, 3, 10))
    earn(paris, ada, 40, last_day=dt.date(2026, 3, 10))
    earn(paris, ada, 25, last_day=dt.date(2026, 3, 31))  # the window's last day (30 days)
    earn(paris, ada, 999, last_day=dt.date(2026, 4, 1))  # outside the window
    later = MemberFactory(program=paris)
    earn(paris, later, 50, last_day=dt.date(2026, 4, 20))
    no_address = MemberFactory(program=paris, email="")
    earn(paris, no_address, 50, last_day=dt.date(2026, 3, 10))
    blocked = MemberFactory(program=paris)
    earn(paris, blocked, 50, last_day=dt.date(2026, 3, 10))
    Member.objects.filter(pk=blocked.pk).update(status=Member.Status.BLOCKED)

    result = email_schedules.expiry_warnings_send(now=now)

    [warning] = messages("points_expiring")
    assert result.queued == 1
    assert warning.member_id == ada.pk
    assert warning.source == "expiring:2026-03-31"
    assert warning.data == {
        "lots": [{"points": 140, "expires_on": "2026-03-10"}, {"points": 25, "expires_on": "2026-03-31"}],
        "points": 165,
        "expires_on": "2026-03-10",
        "last_chance": False,
    }
    assert warning.status == "sent"  # sent after the chunk's commit
    assert [m.to for m in mail.outbox if m.tags == ["points_expiring"]] == [[ada.email]]


def test_expiry_warning_counts_what_is_left_of_a_lot_and_skips_spent_and_pending_ones(paris):
    now = at("2026-03-01T09:00:00+00:00")
    ada = MemberFactory(program=paris)
    earn(paris, ada, 100, last_day=dt.date(2026, 3, 10))
    earn(paris, ada, 100, last_day=dt.date(2026, 3, 20))
    ledger.points_adjust(program=paris, member_id=ada.pk, points=-130, reason="spent", source="test", now=now)
    email_schedules.expiry_warnings_send(now=now)
    [warning] = messages("points_expiring")
    assert warning.data["lots"] == [{"points": 70, "expires_on": "2026-03-20"}]


def test_a_second_run_queues_nothing_and_a_later_run_only_warns_about_new_lots(paris):
    ada = MemberFactory(program=paris)
    earn(paris, ada, 100, last_day=dt.date(2026, 3, 10))
    earn(paris, ada, 30, last_day=dt.date(2026, 4, 5))
    first = at("2026-03-01T09:00:00+00:00")
    assert email_schedules.expiry_warnings_send(now=first).queued == 1
    assert email_schedules.expiry_warnings_send(now=first).queued == 0
    # Next days: nothing new came into the window until 5 April's lot does (on 6 March).
    assert email_schedules.expiry_warnings_send(now=at("2026-03-02T09:00:00+00:00")).queued == 0
    assert email_schedules.expiry_warnings_send(now=at("2026-03-06T09:00:00+00:00")).queued == 1
    assert email_schedules.expiry_warnings_send(now=at("2026-03-06T09:00:00+00:00")).queued == 0
    sources = [m.source for m in messages("points_expiring")]
    assert sources == ["expiring:2026-03-10", "expiring:2026-04-05"]
    second = messages("points_expiring")[1]
    assert second.data["lots"] == [
        {"points": 100, "expires_on": "2026-03-10"},
        {"points": 30, "expires_on": "2026-04-05"},
    ]


def test_last_chance_the_day_before_once(paris):
    ada = MemberFactory(program=paris)
    earn(paris, ada, 100, last_day=dt.date(2026, 3, 10))
    call_command("send_expiry_warnings", "--now", "2026-03-08T09:00:00+00:00")  # the warning
    assert [m.source for m in messages("points_expiring")] == ["expiring:2026-03-10"]
    call_command("send_expiry_warnings", "--now", "2026-03-09T09:00:00+00:00")
    call_command("send_expiry_warnings", "--now", "2026-03-09T18:00:00+00:00")
    call_command("send_expiry_warnings", "--now", "2026-03-10T09:00:00+00:00")
    found = messages("points_expiring", source__startswith="last_chance")
    assert [(m.source, m.data["last_chance"], m.data["points"]) for m in found] == [
        ("last_chance:2026-03-10", True, 100)
    ]
    assert found[0].data["lots"] == [{"points": 100, "expires_on": "2026-03-10"}]


def test_the_last_chance_follows_the_programs_midnight_not_utcs(paris, utc_program):
    # Both lots are valid through 15 March, local time: Paris's end at 2026-03-15T23:00Z.
    in_paris = MemberFactory(program=paris)
    earn(paris, in_paris, 10, last_day=dt.date(2026, 3, 15))
    in_utc = MemberFactory(program=utc_program)
    earn(utc_program, in_utc, 10, last_day=dt.date(2026, 3, 15))
    settings_for(paris, expiry_warning_days=1)
    settings_for(utc_program, expiry_warning_days=1)

    email_schedules.expiry_warnings_send(now=at("2026-03-13T22:30:00+00:00"))  # 23:30 on the 13th in Paris
    assert messages("points_expiring") == []
    email_schedules.expiry_warnings_send(now=at("2026-03-13T23:30:00+00:00"))  # 00:30 on the 14th in Paris
    assert [m.member_id for m in messages("points_expiring")] == [in_paris.pk]
    email_schedules.expiry_warnings_send(now=at("2026-03-14T00:30:00+00:00"))  # the 14th in UTC too
    assert sorted(m.member_id for m in messages("points_expiring")) == sorted([in_paris.pk, in_utc.pk])
    assert {m.source for m in messages("points_expiring")} == {"last_chance:2026-03-15"}


def test_expiry_warnings_switched_off_queue_nothing(paris):
    settings_for(paris, enabled_kinds=["welcome"])
    ada = MemberFactory(program=paris)
    earn(paris, ada, 100, last_day=dt.date(2026, 3, 10))
    assert email_schedules.expiry_warnings_send(now=at("2026-03-09T09:00:00+00:00")).queued == 0
    assert messages("points_expiring") == []


def test_expiry_warnings_in_small_chunks_reach_every_member(paris):
    members = [MemberFactory(program=paris) for _ in range(5)]
    for member in members:
        earn(paris, member, 10, last_day=dt.date(2026, 3, 10))
    result = email_schedules.expiry_warnings_send(now=at("2026-03-01T09:00:00+00:00"), chunk_size=2)
    assert result.chunks == 3
    assert sorted(m.member_id for m in messages("points_expiring")) == sorted(m.pk for m in members)


# --------------------------------------------------------------------------------------------
# points_reminder


def test_reminders_go_to_members_with_a_balance_consent_and_an_address(paris):
    now = at("2026-12-01T09:00:00+00:00")
    chosen = MemberFactory(program=paris, email_consent=True)
    earn(paris, chosen, 120, last_day=dt.date(2027, 6, 1))
    no_consent = MemberFactory(program=paris, email_consent=False)
    earn(paris, no_consent, 120, last_day=dt.date(2027, 6, 1))
    no_address = MemberFactory(program=paris, email="", email_consent=True)
    earn(paris, no_address, 120, last_day=dt.date(2027, 6, 1))
    MemberFactory(program=paris, email_consent=True)  # no balance
    spent = MemberFactory(program=paris, email_consent=True)
    earn(paris, spent, 120, last_day=dt.date(2027, 6, 1))
    ledger.points_adjust(program=paris, member_id=spent.pk, points=-120, reason="spent", source="test", now=now)

    result = call_command_result("send_point_reminders", now)

    [message] = messages("points_reminder")
    assert message.member_id == chosen.pk
    assert message.source == "2026-12"
    assert message.data == {"period": "2026-12"}
    assert message.status == "sent"
    assert "1 messages queued" in result


def call_command_result(name: str, now: dt.datetime) -> str:
    from io import StringIO

    out = StringIO()
    call_command(name, "--now", now.isoformat(), stdout=out)
    return out.getvalue()


def test_reminders_once_per_period_even_when_the_run_record_is_lost(paris):
    ada = MemberFactory(program=paris, email_consent=True)
    earn(paris, ada, 120, last_day=dt.date(2027, 6, 1))
    now = at("2026-12-01T09:00:00+00:00")
    assert email_schedules.point_reminders_send(now=now).queued == 1
    again = email_schedules.point_reminders_send(now=now + dt.timedelta(days=3))
    assert again.queued == 0
    assert again.skipped_programs == [paris.slug]
    EmailScheduleRun.objects.all().delete()  # a run cut short before it recorded the period
    assert email_schedules.point_reminders_send(now=now + dt.timedelta(days=3)).queued == 0
    assert email_schedules.point_reminders_send(now=at("2027-01-01T09:00:00+00:00")).queued == 1
    assert [m.source for m in messages("points_reminder")] == ["2026-12", "2027-01"]


def test_reminders_follow_each_programs_frequency(paris, utc_program):
    quarterly = ProgramFactory(timezone="Europe/Paris")
    off = ProgramFactory(timezone="Europe/Paris")
    settings_for(quarterly, reminder_frequency="quarterly")
    settings_for(off, reminder_frequency="off")
    switched_off = ProgramFactory(timezone="Europe/Paris")
    settings_for(switched_off, enabled_kinds=["welcome"])
    for program in (paris, quarterly, off, switched_off):
        member = MemberFactory(program=program, email_consent=True)
        earn(program, member, 50, last_day=dt.date(2027, 6, 1))

    email_schedules.point_reminders_send(now=at("2026-11-15T09:00:00+00:00"))

    found = {m.program_id: m.source for m in messages("points_reminder")}
    assert found == {paris.pk: "2026-11", quarterly.pk: "2026-Q4"}


def test_the_reminder_period_is_the_programs_local_month(paris, utc_program):
    for program in (paris, utc_program):
        member = MemberFactory(program=program, email_consent=True)
        earn(program, member, 50, last_day=dt.date(2027, 6, 1))
    email_schedules.point_reminders_send(now=at("2026-11-30T23:30:00+00:00"))  # 00:30 on 1 December in Paris
    found = {m.program_id: m.source for m in messages("points_reminder")}
    assert found == {paris.pk: "2026-12", utc_program.pk: "2026-11"}


def test_the_statement_is_completed_at_send_time(paris):
    now = dt.datetime.now(UTC)
    today = paris.local_date(now)
    TierFactory(program=paris, name="Silver", position=1, threshold=Decimal(100))
    TierFactory(program=paris, name="Gold", position=2, threshold=Decimal(5000))
    ada = MemberFactory(program=paris, email_consent=True)
    earn(paris, ada, 300, last_day=today + dt.timedelta(days=10))
    earn(paris, ada, 400, last_day=today + dt.timedelta(days=200))
    within = RewardFactory(program=paris, name="5 off", cost_points=500)
    RewardFactory(program=paris, name="Too dear", cost_points=5000)
    ada.refresh_from_db()

    facts = email_context.ENRICHERS["points_reminder"]({"period": "2026-12"}, paris, ada)

    assert facts["expiring_soon"] == 300
    assert facts["next_tier"] == {"name": "Gold", "points_needed": Decimal(4300)}  # Silver now
    assert facts["rewards"] == [{"name": within.name, "points": 500, "description": within.description}]
    assert facts["period"] == "December 2026"  # the period key, in words in the member's language


# --------------------------------------------------------------------------------------------
# tier_at_risk


@pytest.fixture
def rolling(db):
    program = ProgramFactory(timezone="Europe/Paris", expiry_days=730, tier_window="rolling", tier_window_days=365)
    silver = TierFactory(program=program, name="Silver", position=1, threshold=Decimal(100))
    gold = TierFactory(program=program, name="Gold", position=2, threshold=Decimal(500), benefits="Free shipping")
    return program, silver, gold


def earned_at(program, member, points: int, when: dt.datetime) -> None:
    ledger.points_earn(program=program, member_id=member.pk, points=points, reason="test", occurred_at=when, now=when)


def set_tier(member, tier, **fields) -> None:
    MemberTier.objects.update_or_create(
        member_id=member.pk,
        defaults={
            "tier": tier,
            "since": dt.datetime(2025, 1, 1, tzinfo=UTC),
            "retain_until": None,
            "manual_until": None,
            **fields,
        },
    )


def test_a_member_whose_points_leave_the_window_soon_is_warned(rolling):
    program, _silver, gold = rolling
    now = at("2026-06-10T09:00:00+00:00")
    leaving = MemberFactory(program=program, email_consent=True)
    earned_at(program, leaving, 600, now - dt.timedelta(days=360))  # leaves the window in 5 days
    earned_at(program, leaving, 150, now - dt.timedelta(days=10))
    set_tier(leaving, gold)
    safe = MemberFactory(program=program, email_consent=True)
    earned_at(program, safe, 600, now - dt.timedelta(days=100))
    set_tier(safe, gold)
    retained = MemberFactory(program=program, email_consent=True)
    earned_at(program, retained, 600, now - dt.timedelta(days=360))
    set_tier(retained, gold, retain_until=now + dt.timedelta(days=40))
    no_consent = MemberFactory(program=program, email_consent=False)
    earned_at(program, no_consent, 600, now - dt.timedelta(days=360))
    set_tier(no_consent, gold)

    result = email_schedules.tier_at_risk_send(now=now)

    [message] = messages("tier_at_risk")
    assert result.queued == 1
    assert message.member_id == leaving.pk
    # 600 points earned at 2025-06-15T09:00Z leave the window after 2026-06-15T09:00Z; the
    # next evaluation (02:30 UTC) is on 16 June.
    assert message.source == f"tier_at_risk:{gold.pk}:2026-06-16"
    assert message.data == {
        "tier": {"name": "Gold", "benefits": "Free shipping", "multiplier": 1.0},
        "evaluation_on": "2026-06-16",
        "needed": 350.0,
        "lower_tier": {"name": "Silver"},
    }
    assert email_schedules.tier_at_risk_send(now=now).queued == 0
    assert email_schedules.tier_at_risk_send(now=now + dt.timedelta(days=1)).queued == 0


def test_a_member_kept_only_by_retention_is_warned_before_it_ends(db):
    program = ProgramFactory(timezone="UTC", tier_window="lifetime")
    gold = TierFactory(program=program, name="Gold", position=1, threshold=Decimal(500))
    settings_for(program, tier_at_risk_days=7)
    now = at("2026-06-10T09:00:00+00:00")
    member = MemberFactory(program=program, email_consent=True)
    earned_at(program, member, 200, now - dt.timedelta(days=30))
    set_tier(member, gold, retain_until=now + dt.timedelta(days=10))
    assert email_schedules.tier_at_risk_send(now=now).queued == 0  # 10 days away, beyond 7
    assert email_schedules.tier_at_risk_send(now=now + dt.timedelta(days=4)).queued == 1
    [message] = messages("tier_at_risk")
    assert message.data["evaluation_on"] == "2026-06-21"  # retention ends 20 June 09:00: the 21st's run
    assert message.data["needed"] == 300.0
    assert message.data["lower_tier"] == {"name": ""}


def test_a_calendar_year_tier_is_at_risk_at_new_year_in_the_programs_zone(db):
    program = ProgramFactory(timezone="Europe/Paris", tier_window="calendar_year", expiry_days=730)
    gold = TierFactory(program=program, name="Gold", position=1, threshold=Decimal(100))
    member = MemberFactory(program=program, email_consent=True)
    earned_at(program, member, 300, at("2026-03-01T12:00:00+00:00"))
    set_tier(member, gold)
    assert email_schedules.tier_at_risk_send(now=at("2026-12-10T09:00:00+00:00")).queued == 0  # 21 days ahead
    assert email_schedules.tier_at_risk_send(now=at("2026-12-20T09:00:00+00:00")).queued == 1
    [message] = messages("tier_at_risk")
    # The year ends at 2026-12-31T23:00Z in Paris; the first evaluation after it is 1 January's.
    assert message.data["evaluation_on"] == "2027-01-01"
    assert message.data["needed"] == 100.0


def test_a_manual_tier_running_beyond_the_window_is_not_at_risk(rolling):
    program, _silver, gold = rolling
    now = at("2026-06-10T09:00:00+00:00")
    member = MemberFactory(program=program, email_consent=True)
    set_tier(member, gold, manual_until=now + dt.timedelta(days=60))
    assert email_schedules.tier_at_risk_send(now=now).queued == 0
    MemberTier.objects.filter(member_id=member.pk).update(manual_until=now + dt.timedelta(days=2))
    assert email_schedules.tier_at_risk_send(now=now).queued == 1


def test_the_tier_check_command_runs_as_of_now(rolling):
    program, _silver, gold = rolling
    now = at("2026-06-10T09:00:00+00:00")
    member = MemberFactory(program=program, email_consent=True)
    earned_at(program, member, 600, now - dt.timedelta(days=360))
    set_tier(member, gold)
    assert "1 messages queued" in call_command_result("send_tier_at_risk_warnings", now)
    assert "0 messages queued" in call_command_result("send_tier_at_risk_warnings", now)


# --------------------------------------------------------------------------------------------
# Beat entries


def test_each_schedule_has_a_beat_entry_and_a_task():
    import importlib

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    from config.celery_app import app

    migration = importlib.import_module("notifications.migrations.0004_email_schedules")
    migration.create(apps, None)  # the tests' database is emptied between transactional tests
    tasks = set(PeriodicTask.objects.values_list("task", flat=True))
    names = {
        "notifications.send_expiry_warnings",
        "notifications.send_point_reminders",
        "notifications.send_tier_at_risk_warnings",
    }
    assert names <= tasks
    assert names <= set(app.tasks)


def test_the_tasks_run_the_jobs_as_of_now(paris):
    from notifications import tasks

    ada = MemberFactory(program=paris, email_consent=True)
    earn(paris, ada, 100, last_day=dt.date(2026, 3, 10))
    tasks.send_expiry_warnings_task.delay(now="2026-03-01T09:00:00+00:00")
    tasks.send_point_reminders_task.delay(now="2026-03-01T09:00:00+00:00")
    tasks.send_tier_at_risk_warnings_task.delay(now="2026-03-01T09:00:00+00:00")
    assert [m.source for m in messages("points_expiring", member=ada)] == ["expiring:2026-03-10"]
    assert [m.source for m in messages("points_reminder", member=ada)] == ["2026-03"]
    assert messages("tier_at_risk", member=ada) == []


def test_a_statement_period_reads_as_words_in_the_members_language():
    from notifications.email_schedules import period_label

    assert period_label("2026-12", "en") == "December 2026"
    assert period_label("2026-12", "fr") == "décembre 2026"
    assert period_label("2026-Q4", "en") == "Q4 2026"
    assert period_label("2026-Q1", "fr") == "1er trimestre 2026"
    assert period_label("November 2026", "en") == "November 2026"


def test_the_tier_metric_reads_with_its_unit():
    from loyalty.models import Program
    from notifications.email_schedules import metric_amount

    program = Program(name="P", points_name="beans", currency="EUR", tier_metric=Program.TierMetric.POINTS_EARNED)
    assert metric_amount(program, 120, "en") == "120 beans"
    program.tier_metric = Program.TierMetric.AMOUNT_SPENT
    assert metric_amount(program, "40", "fr") == "40,00 EUR"
    program.tier_metric = Program.TierMetric.ORDER_COUNT
    assert metric_amount(program, 1, "en") == "1 order"
    assert metric_amount(program, 2, "fr") == "2 commandes"
