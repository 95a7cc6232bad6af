"""The daily roll-ups (dashboard.rollups, `rollup_stats`): equal to the ledger day by day on
random histories, idempotent, incremental, and dated by the program's time zone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase as HypothesisTestCase

from dashboard import rollups
from dashboard.models import DailyBreakdown, DailyStat
from loyalty import errors, services
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tiers import services as tier_services

from .ledger_truth import rolled_up, truth

START = dt.date(2026, 3, 1)
DAYS = 6
KINDS = ("earn", "purchase", "redeem", "adjust_up", "adjust_down", "refund", "expire", "release", "tier", "transfer")

ops = st.lists(
    st.tuples(
        st.integers(0, DAYS - 1),  # day
        st.integers(0, 23 * 60),  # minute of the day (local)
        st.sampled_from(KINDS),
        st.integers(0, 2),  # member
        st.integers(1, 400),  # points
    ),
    min_size=1,
    max_size=25,
)


def _apply(program, members, tiers, staff, op, now, orders):
    _day, _minute, kind, who, pts = op
    member = members[who]
    try:
        if kind == "earn":
            services.points_earn(program=program, member_id=member.pk, points=pts, reason="test", now=now)
        elif kind == "purchase":
            order = f"o-{len(orders)}"
            activity = services.activity_record(
                program=program,
                member=member,
                type="purchase",
                occurred_at=now,
                order_id=order,
                amount=Decimal(pts),
                currency="EUR",
            )
            services.points_earn(program=program, member_id=member.pk, points=pts, activity=activity, now=now)
            orders.append((order, Decimal(pts)))
        elif kind == "redeem":
            services.points_redeem(program=program, member_id=member.pk, points=pts, reason="gift", now=now)
        elif kind in ("adjust_up", "adjust_down"):
            sign = 1 if kind == "adjust_up" else -1
            services.points_adjust(
                program=program, member_id=member.pk, points=sign * pts, reason="fix", actor=staff, now=now
            )
        elif kind == "refund" and orders:
            order, amount = orders[pts % len(orders)]
            services.points_reverse_order(program=program, order_id=order, amount=amount / 2, now=now)
        elif kind == "expire":
            services.points_expire(now=now)
        elif kind == "release":
            services.points_release(now=now)
        elif kind == "tier":
            tier = [None, *tiers][pts % 3]
            member.refresh_from_db()
            tier_services.tier_set_manual(
                member=member,
                tier=tier,
                until=now + dt.timedelta(days=30),
                reason="test",
                actor=staff,
                now=now,
                notify_member=False,
            )
        elif kind == "transfer":
            services.points_transfer(
                program=program,
                from_member_id=member.pk,
                to_member_id=members[(who + 1) % 3].pk,
                points=pts,
                reason="share",
                actor=staff,
                now=now,
            )
    except errors.LoyaltyError:
        pass


class TestRollupsEqualTheLedger(HypothesisTestCase):
    """For random histories over several days, every day's roll-up equals the figures computed
    directly from the ledger (tests/dashboard/ledger_truth.py)."""

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        history=ops,
        tz=st.sampled_from(["Europe/Paris", "America/New_York", "Pacific/Auckland"]),
        split=st.integers(1, DAYS),
    )
    def test_every_day_equals_the_ledger(self, history, tz, split):
        atomic = transaction.atomic()
        atomic._from_testcase = True  # lets the jobs' durable transactions nest (see tests/loyalty)
        atomic.__enter__()
        try:
            self._check(history, tz, split)
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)

    def _check(self, history, tz, split):
        program = ProgramFactory(timezone=tz, pending_days=2, expiry_days=3)
        staff = StaffFactory(is_superuser=True)
        members = [
            MemberFactory(program=program, enrolled_at=program.start_of_day(START) + dt.timedelta(hours=h))
            for h in (1, 30, 60)
        ]
        tiers = [
            tier_services.tier_create(program=program, name="Silver", position=1, threshold=Decimal(1000)),
            tier_services.tier_create(program=program, name="Gold", position=2, threshold=Decimal(5000)),
        ]
        orders: list = []
        for op in sorted(history, key=lambda o: (o[0], o[1])):
            now = program.start_of_day(START + dt.timedelta(days=op[0])) + dt.timedelta(minutes=op[1])
            _apply(program, members, tiers, staff, op, now, orders)
        end = program.start_of_day(START + dt.timedelta(days=DAYS + 1)) + dt.timedelta(minutes=5)
        # Two runs: up to `split`, then incrementally the rest (the stocks carry over).
        rollups.rollup_program(program, now=program.start_of_day(START + dt.timedelta(days=split)))
        rollups.rollup_program(program, now=end)
        for i in range(DAYS + 1):
            day = START + dt.timedelta(days=i)
            assert rolled_up(program, day) == truth(program, day), day


@pytest.fixture
def history(program):
    """A member who earns on two days in Paris, one of them just before local midnight."""
    staff = StaffFactory(is_superuser=True)
    m = MemberFactory(program=program, enrolled_at=dt.datetime(2026, 2, 27, 12, tzinfo=dt.UTC))
    # 23:30 in Paris on 1 March is 22:30 UTC: the points belong to 1 March, not 2 March.
    services.points_earn(
        program=program, member_id=m.pk, points=100, now=dt.datetime(2026, 3, 1, 22, 30, tzinfo=dt.UTC)
    )
    services.points_adjust(
        program=program,
        member_id=m.pk,
        points=-30,
        reason="fix",
        actor=staff,
        now=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC),
    )
    return m


NOW = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)


def test_days_follow_the_programs_time_zone(history, program):
    rollups.rollup_program(program, now=NOW)
    stats = {s.day: s for s in DailyStat.objects.filter(program=program)}
    assert stats[dt.date(2026, 3, 1)].earned == 100
    assert stats[dt.date(2026, 3, 2)].earned == 0
    assert stats[dt.date(2026, 3, 2)].adjusted_down == 30
    assert stats[dt.date(2026, 3, 3)].available == 70
    # The last day is the last one over in Paris: 4 March is not.
    assert max(stats) == dt.date(2026, 3, 3)


def test_a_day_is_rolled_up_once_it_is_over_in_the_programs_zone(history, program):
    program.timezone = "Pacific/Auckland"  # UTC+13: 4 March ended at 11:00 UTC
    program.save()
    rollups.rollup_program(program, now=dt.datetime(2026, 3, 4, 10, 59, tzinfo=dt.UTC))
    assert DailyStat.objects.filter(program=program).latest("day").day == dt.date(2026, 3, 3)
    rollups.rollup_program(program, now=dt.datetime(2026, 3, 4, 11, 1, tzinfo=dt.UTC))
    assert DailyStat.objects.filter(program=program).latest("day").day == dt.date(2026, 3, 4)


def test_idempotent_and_incremental(history, program):
    first = rollups.rollup_program(program, now=NOW)
    assert first.days == DailyStat.objects.filter(program=program).count() > 0
    rows = list(DailyStat.objects.filter(program=program).order_by("day").values())
    parts = DailyBreakdown.objects.filter(program=program).count()
    again = rollups.rollup_program(program, now=NOW)
    assert again.days == 0
    assert list(DailyStat.objects.filter(program=program).order_by("day").values()) == rows
    assert DailyBreakdown.objects.filter(program=program).count() == parts
    # A day already rolled up is not recomputed unless asked: tamper with one and see.
    DailyStat.objects.filter(program=program, day=dt.date(2026, 3, 1)).update(earned=999)
    rollups.rollup_program(program, now=NOW + dt.timedelta(days=1))
    assert DailyStat.objects.get(program=program, day=dt.date(2026, 3, 1)).earned == 999
    assert DailyStat.objects.filter(program=program).latest("day").day == dt.date(2026, 3, 4)
    # --since recomputes from that day on; the rows are the same as the first time.
    rollups.rollup_program(program, now=NOW, since=dt.date(2026, 3, 1))
    assert DailyStat.objects.get(program=program, day=dt.date(2026, 3, 1)).earned == 100
    recomputed = list(DailyStat.objects.filter(program=program, day__lte=dt.date(2026, 3, 3)).order_by("day").values())
    assert [{**r, "computed_at": None, "id": None} for r in recomputed] == [
        {**r, "computed_at": None, "id": None} for r in rows
    ]


def test_command(history, program):
    out = StringIO()
    call_command("rollup_stats", "--now", NOW.isoformat(), "--program", program.slug, stdout=out)
    assert "rolled up" in out.getvalue()
    out = StringIO()
    call_command("rollup_stats", "--now", NOW.isoformat(), stdout=out)
    assert f"{program.slug}: up to date" in out.getvalue()
    DailyStat.objects.filter(program=program).update(earned=0)
    call_command("rollup_stats", "--now", NOW.isoformat(), "--force", stdout=StringIO())
    assert DailyStat.objects.get(program=program, day=dt.date(2026, 3, 1)).earned == 100


@pytest.mark.parametrize(
    "args",
    [["--since", "2026-13-01"], ["--now", "yesterday"], ["--now", "2026-03-01T00:00:00"], ["--program", "nope"]],
)
def test_command_refuses_bad_input(db, args):
    with pytest.raises(CommandError):
        call_command("rollup_stats", *args, stdout=StringIO())


def test_the_beat_task_and_schedule(history, program):
    from django_celery_beat.models import PeriodicTask

    from dashboard.tasks import rollup_stats_task

    assert PeriodicTask.objects.get(task="dashboard.rollup_stats").enabled
    assert rollup_stats_task(now=NOW.isoformat())[program.slug] > 0
