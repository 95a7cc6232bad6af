"""Birthday bonus: once a year, on the member's birthday in the program's time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from loyalty.models import Activity, LedgerEntry, Member
from tests.loyalty.factories import MemberFactory, ProgramFactory
from workflows import birthdays, services
from workflows.models import EarningRule
from workflows.tasks import award_birthdays_task

from .factories import EarningRuleFactory

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
TONGA = zoneinfo.ZoneInfo("Pacific/Tongatapu")  # UTC+13, no DST
HONOLULU = zoneinfo.ZoneInfo("Pacific/Honolulu")  # UTC-10, no DST
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def paris(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PARIS)


def program_with_birthday_rule(timezone: str = "Europe/Paris", points: int = 200):
    program = ProgramFactory(timezone=timezone, expiry_days=None)
    EarningRuleFactory(program=program, name="Birthday bonus", trigger="birthday", points=points)
    return program


def born(program, birthday: dt.date, **kwargs) -> Member:
    return MemberFactory(program=program, birthday=birthday, enrolled_at=kwargs.pop("enrolled_at", LONG_AGO), **kwargs)


def awarded(member: Member) -> list[tuple[int, dt.datetime]]:
    return list(LedgerEntry.objects.filter(member=member).order_by("id").values_list("points", "occurred_at"))


@pytest.fixture
def program(db):
    return program_with_birthday_rule()


# --------------------------------------------------------------------------------------------
# The day


def test_member_gets_the_bonus_on_their_birthday_dated_at_the_start_of_the_local_day(program):
    member = born(program, dt.date(1990, 3, 4))
    tomorrow = born(program, dt.date(1990, 3, 5))
    yesterday = born(program, dt.date(1990, 3, 3))
    no_birthday = MemberFactory(program=program, birthday=None, enrolled_at=LONG_AGO)
    result = birthdays.birthdays_award(now=paris(2026, 3, 4, 0, 15), lookback_days=0)
    assert (result.members, result.points, result.already, result.programs) == (1, 200, 0, 1)
    assert awarded(member) == [(200, paris(2026, 3, 4))]
    assert awarded(tomorrow) == awarded(yesterday) == awarded(no_birthday) == []
    activity = Activity.objects.get(member=member)
    assert (activity.type, activity.occurred_at) == ("birthday", paris(2026, 3, 4))


def test_programs_without_an_active_birthday_rule_are_left_alone(program):
    quiet = ProgramFactory()
    EarningRuleFactory(program=quiet, trigger="birthday", points=50, is_active=False)
    member = born(quiet, dt.date(1990, 3, 4))
    result = birthdays.birthdays_award(now=paris(2026, 3, 4, 9))
    assert (result.programs, result.members) == (1, 0)
    assert not Activity.objects.filter(member=member).exists()


def test_feb_29_birthday_is_celebrated_on_feb_28_in_a_non_leap_year(program):
    leapling = born(program, dt.date(2000, 2, 29))
    assert birthdays.birthdays_award(now=paris(2027, 2, 27, 12), lookback_days=0).members == 0
    result = birthdays.birthdays_award(now=paris(2027, 2, 28, 12), lookback_days=0)
    assert result.members == 1
    assert awarded(leapling) == [(200, paris(2027, 2, 28))]
    # 1 March looking back over 28 February: the same birthday, not a second one.
    again = birthdays.birthdays_award(now=paris(2027, 3, 1, 12), lookback_days=1)
    assert (again.members, again.already) == (0, 1)
    assert len(awarded(leapling)) == 1


def test_feb_29_birthday_is_celebrated_on_feb_29_in_a_leap_year(program):
    leapling = born(program, dt.date(2000, 2, 29))
    feb_28 = born(program, dt.date(1999, 2, 28))
    result = birthdays.birthdays_award(now=paris(2028, 2, 28, 12), lookback_days=0)
    assert result.members == 1
    assert awarded(leapling) == []
    assert awarded(feb_28) == [(200, paris(2028, 2, 28))]
    birthdays.birthdays_award(now=paris(2028, 2, 29, 12), lookback_days=0)
    assert awarded(leapling) == [(200, paris(2028, 2, 29))]


def test_a_missed_feb_28_in_a_non_leap_year_is_caught_up_by_the_lookback(program):
    leapling = born(program, dt.date(2000, 2, 29))
    result = birthdays.birthdays_award(now=paris(2027, 3, 2, 12), lookback_days=3)
    assert result.members == 1
    assert awarded(leapling) == [(200, paris(2027, 2, 28))]


def test_birthday_days_maps_each_pair_to_its_celebration_day():
    days = birthdays.birthday_days(today=dt.date(2027, 3, 1), lookback_days=1)
    assert days == {(2, 28): dt.date(2027, 2, 28), (2, 29): dt.date(2027, 2, 28), (3, 1): dt.date(2027, 3, 1)}
    leap = birthdays.birthday_days(today=dt.date(2028, 3, 1), lookback_days=2)
    assert leap == {(2, 28): dt.date(2028, 2, 28), (2, 29): dt.date(2028, 2, 29), (3, 1): dt.date(2028, 3, 1)}


# --------------------------------------------------------------------------------------------
# Time zones


def test_a_member_at_utc_plus_13_gets_it_on_their_local_day_not_utcs(db):
    program = program_with_birthday_rule("Pacific/Tongatapu")
    local_today = born(program, dt.date(1990, 3, 5))
    utc_today = born(program, dt.date(1990, 3, 4))
    now = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)  # 5 March 01:00 in Tonga
    result = birthdays.birthdays_award(now=now, lookback_days=0)
    assert result.members == 1
    assert awarded(local_today) == [(200, dt.datetime(2026, 3, 5, tzinfo=TONGA))]
    assert awarded(utc_today) == []


def test_a_member_at_utc_minus_10_gets_it_on_their_local_day_not_utcs(db):
    program = program_with_birthday_rule("Pacific/Honolulu")
    local_today = born(program, dt.date(1990, 3, 4))
    utc_today = born(program, dt.date(1990, 3, 5))
    now = dt.datetime(2026, 3, 5, 5, 0, tzinfo=dt.UTC)  # 4 March 19:00 in Honolulu
    result = birthdays.birthdays_award(now=now, lookback_days=0)
    assert result.members == 1
    assert awarded(local_today) == [(200, dt.datetime(2026, 3, 4, tzinfo=HONOLULU))]
    assert awarded(utc_today) == []


def test_one_run_serves_programs_in_different_time_zones(db):
    tonga = program_with_birthday_rule("Pacific/Tongatapu", points=13)
    honolulu = program_with_birthday_rule("Pacific/Honolulu", points=10)
    in_tonga = born(tonga, dt.date(1990, 3, 5))
    in_honolulu = born(honolulu, dt.date(1990, 3, 4))
    now = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)  # 5 March in Tonga, 4 March 02:00 in Honolulu
    result = birthdays.birthdays_award(now=now, lookback_days=0)
    assert (result.programs, result.members, result.points) == (2, 2, 23)
    assert [p for p, _ in awarded(in_tonga)] == [13]
    assert [p for p, _ in awarded(in_honolulu)] == [10]


# --------------------------------------------------------------------------------------------
# Once a year


def test_running_the_job_twice_awards_once(program):
    member = born(program, dt.date(1990, 3, 4))
    first = birthdays.birthdays_award(now=paris(2026, 3, 4, 0, 15))
    second = birthdays.birthdays_award(now=paris(2026, 3, 4, 18, 0))
    assert (first.members, second.members, second.already, second.points) == (1, 0, 1, 0)
    assert len(awarded(member)) == 1
    assert Activity.objects.filter(member=member, type="birthday").count() == 1


def test_the_lookback_catches_up_missed_nights_once(program):
    member = born(program, dt.date(1990, 3, 2))
    result = birthdays.birthdays_award(now=paris(2026, 3, 4, 0, 15), lookback_days=3)
    assert result.members == 1
    assert awarded(member) == [(200, paris(2026, 3, 2))]
    # The next night still looks back over 2 March: a replay.
    assert birthdays.birthdays_award(now=paris(2026, 3, 5, 0, 15), lookback_days=3).already == 1
    assert len(awarded(member)) == 1


def test_a_birthday_older_than_the_lookback_is_not_paid(program):
    member = born(program, dt.date(1990, 3, 1))
    assert birthdays.birthdays_award(now=paris(2026, 3, 4, 0, 15), lookback_days=2).members == 0
    assert awarded(member) == []


def test_next_year_pays_again(program):
    member = born(program, dt.date(1990, 3, 4))
    birthdays.birthdays_award(now=paris(2026, 3, 4, 9))
    birthdays.birthdays_award(now=paris(2027, 3, 4, 9))
    assert [when for _, when in awarded(member)] == [paris(2026, 3, 4), paris(2027, 3, 4)]


def test_year_boundary_lookback_pays_31_december_under_last_years_key(program):
    new_years_eve = born(program, dt.date(1990, 12, 31))
    new_year = born(program, dt.date(1990, 1, 1))
    birthdays.birthdays_award(now=paris(2026, 12, 31, 0, 15), lookback_days=3)
    result = birthdays.birthdays_award(now=paris(2027, 1, 1, 0, 15), lookback_days=3)
    assert (result.members, result.already) == (1, 1)
    assert awarded(new_years_eve) == [(200, paris(2026, 12, 31))]
    assert awarded(new_year) == [(200, paris(2027, 1, 1))]
    assert Activity.objects.get(member=new_years_eve).occurred_at.astimezone(PARIS).year == 2026


def test_year_boundary_catch_up_of_a_missed_31_december(program):
    member = born(program, dt.date(1990, 12, 31))
    result = birthdays.birthdays_award(now=paris(2027, 1, 2, 0, 15), lookback_days=3)
    assert result.members == 1
    assert awarded(member) == [(200, paris(2026, 12, 31))]
    # The next 31 December is a new year's birthday.
    assert birthdays.birthdays_award(now=paris(2027, 12, 31, 9)).members == 1
    assert len(awarded(member)) == 2


def test_a_member_who_enrolled_after_the_birthday_gets_nothing_for_it(program):
    late = born(program, dt.date(1990, 3, 2), enrolled_at=paris(2026, 3, 3, 10))
    on_the_day = born(program, dt.date(1990, 3, 2), enrolled_at=paris(2026, 3, 2, 23))
    birthdays.birthdays_award(now=paris(2026, 3, 4, 0, 15), lookback_days=3)
    assert awarded(late) == []
    assert len(awarded(on_the_day)) == 1


# --------------------------------------------------------------------------------------------
# Failures do not stop the run


def test_blocked_members_are_skipped_and_counted(program):
    blocked = born(program, dt.date(1990, 3, 4), status=Member.Status.BLOCKED)
    active = born(program, dt.date(1990, 3, 4))
    result = birthdays.birthdays_award(now=paris(2026, 3, 4, 9))
    assert (result.members, result.blocked) == (1, 1)
    assert awarded(blocked) == []
    assert len(awarded(active)) == 1


def test_an_error_on_one_member_is_counted_and_the_run_goes_on(program, monkeypatch, caplog):
    broken = born(program, dt.date(1990, 3, 4))
    fine = born(program, dt.date(1990, 3, 4))
    real = services.activity_report

    def report(**kwargs):
        if kwargs["member"].pk == broken.pk:
            raise RuntimeError("boom")
        return real(**kwargs)

    monkeypatch.setattr(services, "activity_report", report)
    result = birthdays.birthdays_award(now=paris(2026, 3, 4, 9))
    assert (result.members, result.errors) == (1, 1)
    assert len(awarded(fine)) == 1
    assert awarded(broken) == []
    assert f"member {broken.pk}" in caplog.text
    monkeypatch.setattr(services, "activity_report", real)
    # The next run pays the member the failed run missed.
    assert birthdays.birthdays_award(now=paris(2026, 3, 5, 9)).members == 1
    assert len(awarded(broken)) == 1


def test_a_negative_lookback_is_refused(program):
    from loyalty import errors

    with pytest.raises(errors.InvalidInput):
        birthdays.birthdays_award(now=paris(2026, 3, 4, 9), lookback_days=-1)


# --------------------------------------------------------------------------------------------
# Scale: the candidates come from the functional index


def test_candidates_are_selected_through_the_birthday_index(program):
    born(program, dt.date(1990, 3, 4))
    days = birthdays.birthday_days(today=dt.date(2027, 3, 1), lookback_days=3)
    with connection.cursor() as cur:
        # Whatever the statistics (autovacuum may have analysed the table while it was empty,
        # and then a full scan of the primary key, for the ORDER BY, looks cheapest): neither a
        # sequential scan nor an ordered scan of another index, only a bitmap from an index
        # whose condition matches, which must be the birthday index.
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_indexscan = off")
    plan = birthdays.birthday_candidates(program=program, days=days).explain()
    assert "member_birthday_day" in plan


# --------------------------------------------------------------------------------------------
# Command and task


def test_award_birthdays_command_runs_as_of_now(program):
    member = born(program, dt.date(1990, 3, 2))
    out = StringIO()
    call_command("award_birthdays", "--now", "2026-03-04T00:15:00+01:00", "--lookback-days", "0", stdout=out)
    assert out.getvalue().startswith("0 birthdays awarded")
    out = StringIO()
    call_command("award_birthdays", "--now", "2026-03-04T00:15:00+01:00", "--lookback-days", "2", stdout=out)
    assert out.getvalue().startswith("1 birthdays awarded: 200 points in 1 programs; 0 already awarded")
    assert awarded(member) == [(200, paris(2026, 3, 2))]
    out = StringIO()
    call_command("award_birthdays", "--now", "2026-03-04T00:15:00+01:00", stdout=out)
    assert "0 birthdays awarded" in out.getvalue()
    assert "1 already awarded" in out.getvalue()


def test_the_beat_task_awards_as_of_its_now(program):
    member = born(program, dt.date(1990, 3, 4))
    assert award_birthdays_task("2026-03-04T09:00:00+01:00") == {"members": 1, "points": 200}
    assert awarded(member) == [(200, paris(2026, 3, 4))]


def test_the_builtin_birthday_rule_pays_once_switched_on(program):
    from workflows import builtins

    other = ProgramFactory(timezone="Europe/Paris")
    builtins.builtin_rules_install(program=other)
    member = born(other, dt.date(1990, 3, 4))
    assert birthdays.birthdays_award(now=paris(2026, 3, 4, 9)).members == 0
    EarningRule.objects.filter(program=other, builtin="birthday").update(is_active=True)
    assert birthdays.birthdays_award(now=paris(2026, 3, 4, 9)).points == 200
    assert LedgerEntry.objects.get(member=member).reason == "Birthday bonus"
