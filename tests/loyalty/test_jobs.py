"""The scheduled ledger jobs (expire_points, release_pending_points), their Celery tasks and
verify_ledger: idempotent (rule 5), FIFO expiry of lots' remainders, safe to kill at any
moment, and the database's own refusal to rewrite history (rule 1, migration 0002).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from loyalty import services
from loyalty.models import Allocation, LedgerEntry, LedgerJobRun, Member
from loyalty.selectors import ledger_problems
from loyalty.tasks import expire_points_task, release_pending_points_task
from tests.database import database_url

from .factories import MemberFactory, ProgramFactory

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
BALANCES = ("available", "pending", "lifetime_earned", "redeemed", "expired")
ROOT = Path(__file__).resolve().parents[2]


def earn(member: Member, points: int, *, at: dt.datetime, now: dt.datetime | None = None):
    return services.points_earn(
        program=member.program, member_id=member.id, points=points, occurred_at=at, now=now or at
    )


def redeem(member: Member, points: int, *, now: dt.datetime):
    return services.points_redeem(program=member.program, member_id=member.id, points=points, now=now)


def ledger_snapshot() -> tuple[list, list, list]:
    """Everything a job may change: entries (with their mutable remainder and release stamp),
    allocations and cached balances."""
    entries = list(
        LedgerEntry.objects.order_by("id").values_list(
            "id", "member_id", "kind", "points", "remaining", "released_at", "expires_at"
        )
    )
    allocations = list(Allocation.objects.order_by("id").values_list("debit_id", "lot_id", "points"))
    balances = list(Member.objects.order_by("id").values_list("id", *BALANCES))
    return entries, allocations, balances


def balances(member: Member) -> dict[str, int]:
    member.refresh_from_db()
    return {name: getattr(member, name) for name in BALANCES}


def assert_consistent() -> None:
    assert list(ledger_problems()) == []


@pytest.fixture
def ledger_with_due_and_pending_lots(db):
    """Four members (30-day expiry, 14-day return window) whose lots are, at T0 and before any
    job ran: expired after release and partly spent (50, 20 + i spent), expired while still
    pending (100 + i), due for release (30), still pending (10 + i)."""
    program = ProgramFactory(expiry_days=30, pending_days=14)
    members = [MemberFactory(program=program) for _ in range(4)]
    for i, m in enumerate(members):
        earn(m, 50, at=T0 - dt.timedelta(days=80))
        redeem(m, 20 + i, now=T0 - dt.timedelta(days=60))  # releases the 50 (settling), spends part
        earn(m, 100 + i, at=T0 - dt.timedelta(days=40))  # no debit after it: never released
        earn(m, 30, at=T0 - dt.timedelta(days=20))
        earn(m, 10 + i, at=T0 - dt.timedelta(days=2))
    return program, members


# --- idempotency: the second run changes nothing ------------------------------------------------


def test_expire_points_twice_with_the_same_now_changes_nothing_the_second_time(ledger_with_due_and_pending_lots):
    first = services.points_expire(now=T0, chunk_size=3)
    after_first = ledger_snapshot()

    second = services.points_expire(now=T0, chunk_size=3)

    assert first.points > 0
    assert (second.lots, second.points, second.members) == (0, 0, 0)
    assert ledger_snapshot() == after_first
    assert_consistent()


def test_release_pending_points_twice_with_the_same_now_changes_nothing_the_second_time(
    ledger_with_due_and_pending_lots,
):
    first = services.points_release(now=T0, chunk_size=3)
    after_first = ledger_snapshot()

    second = services.points_release(now=T0, chunk_size=3)

    assert first.points > 0
    assert (second.lots, second.points) == (0, 0)
    assert ledger_snapshot() == after_first
    assert_consistent()


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(lambda cmd, iso: call_command(cmd, now=iso, chunk_size=2, stdout=StringIO()), id="now-kwarg"),
        pytest.param(lambda cmd, iso: call_command(cmd, f"--now={iso}", stdout=StringIO()), id="now-option"),
        pytest.param(
            lambda cmd, iso: call_command(cmd, "--now", iso, "--chunk-size", "1", stdout=StringIO()),
            id="now-option-split",
        ),
    ],
)
@pytest.mark.parametrize("command", ["expire_points", "release_pending_points"])
def test_the_job_commands_run_twice_leave_the_ledger_of_one_run(ledger_with_due_and_pending_lots, command, how):
    iso = T0.isoformat()
    how(command, iso)
    after_first = ledger_snapshot()

    how(command, iso)

    assert ledger_snapshot() == after_first
    assert LedgerJobRun.objects.filter(job=command, as_of=T0).count() == 2
    assert_consistent()


def test_the_expire_command_reports_what_it_did_and_rerun_reports_nothing(ledger_with_due_and_pending_lots):
    _program, members = ledger_with_due_and_pending_lots
    out = StringIO()
    call_command("expire_points", "--now", "2026-03-10T13:00:00+01:00", stdout=out)
    # 100..103 points expired while pending, plus the unspent 30..27 of the released 50s.
    assert "expired 520 points in 8 lots of 4 members" in out.getvalue()
    again = StringIO()
    call_command("expire_points", "--now", "2026-03-10T13:00:00+01:00", stdout=again)
    assert "expired 0 points in 0 lots of 0 members" in again.getvalue()
    assert [balances(m)["expired"] for m in members] == [130, 130, 130, 130]


def test_the_job_commands_refuse_a_time_without_an_offset(db):
    with pytest.raises(CommandError, match="offset"):
        call_command("expire_points", "--now", "2026-03-10T12:00:00")


# --- expiry consumes remainders, first-expiring first ----------------------------------------------


def test_expiry_of_a_partly_spent_lot_expires_only_its_remainder(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=30, pending_days=0, timezone="UTC"))
    lot = earn(member, 100, at=T0).entries[0]
    redeem(member, 35, now=T0 + dt.timedelta(days=1))

    result = services.points_expire(now=lot.expires_at)

    assert (result.lots, result.points) == (1, 65)
    assert balances(member) == {"available": 0, "pending": 0, "lifetime_earned": 100, "redeemed": 35, "expired": 65}
    [expiry] = LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EXPIRE)
    assert expiry.points == -65
    assert [(a.lot_id, a.points) for a in expiry.allocations.all()] == [(lot.id, 65)]
    assert LedgerEntry.objects.get(id=lot.id).remaining == 0
    assert_consistent()


def test_expiry_is_due_at_the_end_of_the_last_valid_day_not_before(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=30, pending_days=0, timezone="Europe/Paris"))
    lot = earn(member, 100, at=T0).entries[0]

    assert services.points_expire(now=lot.expires_at - dt.timedelta(microseconds=1)).points == 0
    assert services.points_expire(now=lot.expires_at).points == 100


def test_spending_is_first_expiring_first_so_expiry_takes_what_is_left_of_the_later_lots(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=30, pending_days=0, timezone="UTC"))
    # Reported in the opposite order of their expiry dates.
    late = earn(member, 50, at=T0).entries[0]
    early = earn(member, 100, at=T0 - dt.timedelta(days=10), now=T0).entries[0]
    assert early.expires_at < late.expires_at
    redeem(member, 120, now=T0)  # all 100 of the early lot, then 20 of the late one

    at_first_expiry = services.points_expire(now=early.expires_at)
    assert (at_first_expiry.lots, at_first_expiry.points) == (0, 0)

    at_second_expiry = services.points_expire(now=late.expires_at)
    assert (at_second_expiry.lots, at_second_expiry.points) == (1, 30)
    assert balances(member)["expired"] == 30
    assert balances(member)["available"] == 0
    assert_consistent()


def test_expiry_across_lots_with_different_dates_expires_each_on_its_own_date(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=30, pending_days=0, timezone="UTC"))
    lots = [earn(member, 10 * (i + 1), at=T0 + dt.timedelta(days=i)).entries[0] for i in range(3)]
    redeem(member, 15, now=T0 + dt.timedelta(days=3))  # 10 of the first lot, 5 of the second

    expired = [services.points_expire(now=lot.expires_at).points for lot in lots]

    assert expired == [0, 15, 30]
    assert_consistent()


def test_points_are_released_when_their_return_window_ends_and_then_spendable(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=None, pending_days=14))
    lot = earn(member, 80, at=T0).entries[0]

    assert services.points_release(now=T0 + dt.timedelta(days=13)).points == 0
    result = services.points_release(now=T0 + dt.timedelta(days=14))

    assert (result.lots, result.points) == (1, 80)
    assert balances(member)["available"] == 80
    assert LedgerEntry.objects.get(id=lot.id).released_at == T0 + dt.timedelta(days=14)
    assert_consistent()


# --- a job killed mid-way ------------------------------------------------------------------------


class Killed(Exception):
    pass


def build_due_lots(program, *, members: int = 12, lots: int = 3) -> list[Member]:
    """Identical data for any program: every lot due at T0, some partly spent."""
    created = [MemberFactory(program=program) for _ in range(members)]
    for i, m in enumerate(created):
        for j in range(lots):
            earn(m, 10 + i + j, at=T0 - dt.timedelta(days=40 + j))
        redeem(m, 5 + i, now=T0 - dt.timedelta(days=35))
    return created


def member_state(members: list[Member]) -> list[tuple]:
    rows = []
    for m in members:
        lots = list(
            LedgerEntry.objects.filter(member=m, points__gt=0).order_by("id").values_list("points", "remaining")
        )
        rows.append((tuple(balances(m).values()), tuple(lots)))
    return rows


@pytest.mark.django_db(transaction=True)
def test_an_expiry_interrupted_after_a_committed_chunk_finishes_on_rerun_like_a_clean_run():
    interrupted_program, clean_program = ProgramFactory(expiry_days=30), ProgramFactory(expiry_days=30)
    interrupted, clean = build_due_lots(interrupted_program), build_due_lots(clean_program)

    def crash_in_second_chunk(chunk: int) -> None:
        if chunk == 2:
            raise Killed

    with pytest.raises(Killed):
        services.points_expire(now=T0, chunk_size=5, program=interrupted_program, after_chunk=crash_in_second_chunk)

    # The first chunk committed; the hook runs inside the second chunk's transaction, so the
    # second chunk rolled back with it. The ledger is consistent in between.
    consumed = Allocation.objects.filter(debit__kind=LedgerEntry.Kind.EXPIRE, lot__program=interrupted_program)
    # A chunk is whole members: the members of the first 5 due lots, with all their due lots.
    members_done = set(consumed.values_list("lot__member_id", flat=True))
    assert consumed.count() >= 5
    assert (
        consumed.count()
        == LedgerEntry.objects.filter(member_id__in=members_done, points__gt=0, expires_at__lte=T0).count()
    )
    assert consumed.values("lot_id").distinct().count() == consumed.count()  # each lot once
    assert LedgerEntry.objects.filter(member_id__in=members_done, kind=LedgerEntry.Kind.EXPIRE).count() == len(
        members_done
    )
    assert not LedgerJobRun.objects.filter(job="expire_points").exists()
    assert_consistent()

    expired_before = sum(a.points for a in consumed)
    rerun = services.points_expire(now=T0, chunk_size=5, program=interrupted_program)
    clean_run = services.points_expire(now=T0, chunk_size=5, program=clean_program)

    assert member_state(interrupted) == member_state(clean)
    assert expired_before + rerun.points == clean_run.points
    assert not LedgerEntry.objects.filter(points__gt=0, remaining__gt=0, expires_at__lte=T0).exists()
    assert_consistent()


JOB_APP = "loyalty-test-job"  # the subprocesses' application_name, to find their sessions


def _subprocess_env() -> dict[str, str]:
    """The test database on the server the tests use (the embedded one's socket included)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(application_name=JOB_APP),
    }


def manage(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=_subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _scalar(sql: str, params: list | None = None):
    with connection.cursor() as cur:
        # Statistics views keep one snapshot per transaction; polling inside one needs a fresh one.
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(sql, params or [])
        return cur.fetchone()[0]


def _wait_for(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


JOB_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
    [JOB_APP],
)
WAITING_JOB_SESSIONS = (JOB_SESSIONS[0] + " AND wait_event_type = 'Lock'", JOB_SESSIONS[1])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_expire_points_killed_with_sigkill_mid_run_leaves_a_consistent_ledger_and_a_rerun_finishes():
    """A real `kill -9` of `manage.py expire_points` in the middle of its run. To kill it at a
    known point rather than after a guessed delay, this test holds the row lock of one member
    whose lots expire mid-range: the job commits the chunks before that member, then blocks on
    the lock; it is killed there (its open chunk never commits), the lock is released, the
    orphaned database session ends, and a second run completes the work."""
    program = ProgramFactory(expiry_days=30, pending_days=0, timezone="UTC")
    n_members, lots_each = 250, 10
    members = [MemberFactory(program=program) for _ in range(n_members)]
    for i, m in enumerate(members):
        for j in range(lots_each):
            # Member i's lots all expire on day i // 10 of a 25-day range: the job (oldest
            # expiry first) reaches member 125 about half-way through its 50 chunks.
            earn(m, 1 + j, at=T0 - dt.timedelta(days=60) + dt.timedelta(days=i // 10, hours=j))
    due_points = n_members * sum(1 + j for j in range(lots_each))
    blocker = members[n_members // 2]
    now = (T0 + dt.timedelta(days=1)).isoformat()

    with transaction.atomic():
        Member.objects.select_for_update().get(pk=blocker.pk)
        job = manage("expire_points", "--now", now, "--chunk-size", "50")
        try:
            _wait_for(
                lambda: _scalar(*WAITING_JOB_SESSIONS) > 0 or job.poll() is not None,
                timeout=120,
                what="the job to reach the locked member",
            )
            assert job.poll() is None, job.communicate()
            committed = _scalar("SELECT count(*) FROM loyalty_ledgerentry WHERE kind = 'expire'")
            job.send_signal(signal.SIGKILL)
            job.wait(timeout=30)
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
    assert job.returncode == -signal.SIGKILL
    # The killed client's session ends once it gets the lock and can't answer; never committing.
    _wait_for(lambda: _scalar(*JOB_SESSIONS) == 0, timeout=60, what="the killed job's session to end")

    expired_lots = LedgerEntry.objects.filter(program=program, points__gt=0, remaining=0).count()
    assert committed > 0
    assert 0 < expired_lots < n_members * lots_each, "the job was not killed mid-way"
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.EXPIRE).count() == committed
    assert not LedgerJobRun.objects.filter(job="expire_points").exists()
    assert_consistent()

    rerun = manage("expire_points", "--now", now, "--chunk-size", "50")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "expired" in out

    assert not LedgerEntry.objects.filter(program=program, points__gt=0, remaining__gt=0).exists()
    assert sum(m.expired for m in Member.objects.filter(program=program)) == due_points
    assert all(m.available == 0 for m in Member.objects.filter(program=program))
    assert_consistent()
    check = manage("verify_ledger")
    out, err = check.communicate(timeout=300)
    assert check.returncode == 0, err
    assert "ledger OK" in out

    # And the command's exit status on a corrupted balance, from the outside.
    with connection.cursor() as cur:
        cur.execute("UPDATE loyalty_member SET available = available + 1 WHERE id = %s", [blocker.pk])
    check = manage("verify_ledger")
    out, err = check.communicate(timeout=300)
    assert check.returncode != 0
    assert f"member {blocker.pk}" in err


# --- Celery tasks ------------------------------------------------------------------------------


def test_the_expire_task_is_idempotent(ledger_with_due_and_pending_lots):
    iso = T0.isoformat()

    first = expire_points_task.apply(kwargs={"now": iso}).get()
    after_first = ledger_snapshot()
    second = expire_points_task.apply(kwargs={"now": iso}).get()

    assert first == {"lots": 8, "points": 520, "members": 4}
    assert second == {"lots": 0, "points": 0, "members": 0}
    assert ledger_snapshot() == after_first
    assert_consistent()


def test_the_release_task_is_idempotent(ledger_with_due_and_pending_lots):
    iso = (T0 + dt.timedelta(days=30)).isoformat()

    first = release_pending_points_task.apply(kwargs={"now": iso}).get()
    after_first = ledger_snapshot()
    second = release_pending_points_task.apply(kwargs={"now": iso}).get()

    assert first["points"] > 0
    assert second == {"lots": 0, "points": 0, "members": 0}
    assert ledger_snapshot() == after_first
    assert_consistent()


def test_the_tasks_give_the_same_ledger_as_the_commands(db):
    def dataset():
        program = ProgramFactory(expiry_days=30)
        return program, build_due_lots(program, members=4, lots=2)

    _, by_task = dataset()
    expire_points_task.apply(kwargs={"now": T0.isoformat()}).get()
    _, by_command = dataset()
    call_command("expire_points", now=T0.isoformat(), stdout=StringIO())

    assert member_state(by_task) == member_state(by_command)


# --- verify_ledger and the append-only ledger ---------------------------------------------------------


@pytest.fixture
def member_with_history(db):
    """Two lots (100 at T0, 50 a day later) and a redemption of 30 taken from the first; a
    bystander member with a lot of 10."""
    program = ProgramFactory(expiry_days=30, pending_days=0)
    member = MemberFactory(program=program)
    bystander = MemberFactory(program=program)
    earn(member, 100, at=T0)
    earn(member, 50, at=T0 + dt.timedelta(days=1))
    earn(bystander, 10, at=T0)
    redeem(member, 30, now=T0 + dt.timedelta(days=1))
    return member


def lots_of(member: Member) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EARN).order_by("id"))


def test_verify_ledger_passes_on_a_consistent_ledger(member_with_history):
    out = StringIO()
    call_command("verify_ledger", stdout=out)
    assert "ledger OK" in out.getvalue()


@pytest.mark.parametrize("column", BALANCES)
def test_verify_ledger_fails_and_names_the_member_whose_cached_balance_is_corrupted(member_with_history, column):
    member = member_with_history
    with connection.cursor() as cur:  # balances are a cache: nothing in the database protects them
        cur.execute(f"UPDATE loyalty_member SET {column} = {column} + 7 WHERE id = %s", [member.id])
    err = StringIO()

    with pytest.raises(CommandError, match=f"member {member.id}"):
        call_command("verify_ledger", stderr=err, stdout=StringIO())

    assert f"member {member.id}: balance: {column} cached" in err.getvalue()
    assert [p.member_id for p in ledger_problems()] == [member.id]


def test_verify_ledger_fails_and_names_the_member_when_an_allocation_does_not_match_its_lot(member_with_history):
    member = member_with_history
    _first, second = lots_of(member)
    redemption = LedgerEntry.objects.get(member=member, kind=LedgerEntry.Kind.REDEEM)
    with connection.cursor() as cur:  # allocations are insert-only, so a stray insert is possible
        cur.execute(
            "INSERT INTO loyalty_allocation (debit_id, lot_id, points, created_at) VALUES (%s, %s, 5, now())",
            [redemption.id, second.id],
        )
    err = StringIO()

    with pytest.raises(CommandError, match=f"member {member.id}"):
        call_command("verify_ledger", stderr=err, stdout=StringIO())

    report = err.getvalue()
    assert f"member {member.id}: allocations: lot {second.id} of 50 has 50 left but allocations took 5" in report
    assert (
        f"member {member.id}: allocations: debit {redemption.id} of -30 with 0 unpaid has allocations of 35" in report
    )


def test_verify_ledger_names_a_lot_whose_remainder_was_lowered_without_an_allocation(member_with_history):
    member = member_with_history
    first, _second = lots_of(member)
    with connection.cursor() as cur:  # `remaining` is the one column the trigger lets change
        cur.execute("UPDATE loyalty_ledgerentry SET remaining = remaining - 5 WHERE id = %s", [first.id])

    problems = list(ledger_problems())

    assert {p.member_id for p in problems} == {member.id}
    assert {p.check for p in problems} == {"balance", "allocations"}
    with pytest.raises(CommandError, match=f"member {member.id}"):
        call_command("verify_ledger", stderr=StringIO(), stdout=StringIO())


def test_verify_ledger_names_an_allocation_that_links_two_members(member_with_history):
    member = member_with_history
    redemption = LedgerEntry.objects.get(member=member, kind=LedgerEntry.Kind.REDEEM)
    foreign_lot = LedgerEntry.objects.exclude(member=member).get(kind=LedgerEntry.Kind.EARN)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO loyalty_allocation (debit_id, lot_id, points, created_at) VALUES (%s, %s, 1, now())",
            [redemption.id, foreign_lot.id],
        )

    problems = list(ledger_problems())

    assert any(p.member_id == member.id and p.check == "pairing" for p in problems)
    with pytest.raises(CommandError, match=f"member {min(member.id, foreign_lot.member_id)}"):
        call_command("verify_ledger", stderr=StringIO(), stdout=StringIO())


def test_ledger_entries_cannot_be_deleted(member_with_history):
    consumed_lot, unconsumed_lot = lots_of(member_with_history)
    with (
        pytest.raises(IntegrityError, match="append-only: DELETE on loyalty_ledgerentry"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute("DELETE FROM loyalty_ledgerentry WHERE id = %s", [consumed_lot.id])
    with pytest.raises(IntegrityError, match="append-only: DELETE on loyalty_ledgerentry"), transaction.atomic():
        LedgerEntry.objects.filter(id=unconsumed_lot.id).delete()
    assert LedgerEntry.objects.filter(id__in=[consumed_lot.id, unconsumed_lot.id]).count() == 2


@pytest.mark.parametrize(
    "assignment",
    [
        "points = points + 1",
        "points = -points",
        "kind = 'adjust'",
        "occurred_at = occurred_at - interval '1 day'",
        "expires_at = expires_at + interval '1 year'",
        "reason = 'edited'",
    ],
)
def test_ledger_entries_cannot_have_their_points_or_history_updated(member_with_history, assignment):
    lot = lots_of(member_with_history)[0]
    with (
        pytest.raises(IntegrityError, match="append-only: UPDATE on loyalty_ledgerentry"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute(f"UPDATE loyalty_ledgerentry SET {assignment} WHERE id = %s", [lot.id])
    assert LedgerEntry.objects.get(id=lot.id).points == 100


def test_a_release_stamp_is_written_once(member_with_history):
    lot = lots_of(member_with_history)[0]
    assert lot.released_at is not None
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(id=lot.id).update(released_at=lot.released_at + dt.timedelta(days=1))


def test_allocations_cannot_be_updated_or_deleted(member_with_history):
    allocation = Allocation.objects.filter(debit__member=member_with_history).first()
    with pytest.raises(IntegrityError, match="append-only: UPDATE on loyalty_allocation"), transaction.atomic():
        Allocation.objects.filter(id=allocation.id).update(points=1)
    with pytest.raises(IntegrityError, match="append-only: DELETE on loyalty_allocation"), transaction.atomic():
        Allocation.objects.filter(id=allocation.id).delete()
    assert Allocation.objects.get(id=allocation.id).points == allocation.points
