"""Rules 2, 3, 4 and 5 of the ledger under real concurrency: threads, each with its own
PostgreSQL connection, released together by a barrier. These tests commit (transaction=True),
so every thread sees the others' work, exactly like web and worker processes do.

Nothing here measures time to prove a property: where a test must show that one call waits
for another, it holds a row lock itself and checks which calls finish while it is held.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections, transaction

from loyalty import errors, services
from loyalty.models import IdempotencyRecord, LedgerEntry, Member
from loyalty.selectors import ledger_problems

from .factories import MemberFactory, ProgramFactory, StaffFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
JOIN_TIMEOUT = 60  # seconds; a thread still alive after this is a deadlock or a lost wake-up


def run_together(n: int, work: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """Run `work(0..n-1)` in n threads released at once; each result is ("ok", value) or
    ("error", exception). Every thread closes its own connection when done."""
    barrier = threading.Barrier(n)
    results: list[tuple[str, Any]] = [("missing", None)] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT)
            results[i] = ("ok", work(i))
        except Exception as exc:
            results[i] = ("error", exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread hung: deadlock or lock never released"
    return results


def backends_waiting_for_a_lock() -> int:
    """Other sessions of this database blocked on a lock (polled: a thread may still be on its
    way to the lock when first asked). The bound is generous so that a busy machine, where the
    thread may take long to get there, does not fail the test: it only costs time when broken."""
    count = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with connection.cursor() as cur:
            # Statistics views keep one snapshot per transaction: take a fresh one each time.
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            count = cur.fetchone()[0]
        if count:
            return count
        threading.Event().wait(0.05)
    return count


def outcome_counts(results: list[tuple[str, Any]]) -> Counter:
    return Counter("ok" if kind == "ok" else type(value).__name__ for kind, value in results)


def assert_consistent() -> None:
    assert list(ledger_problems()) == []


def earn(member: Member, points: int, **kwargs: Any):
    kwargs.setdefault("occurred_at", T0)
    kwargs.setdefault("now", T0)
    return services.points_earn(program=member.program, member_id=member.id, points=points, **kwargs)


def available(member: Member) -> int:
    member.refresh_from_db()
    return member.available


@pytest.fixture
def program():
    return ProgramFactory(expiry_days=365, pending_days=0)


@pytest.fixture
def member_with_100_points(program):
    member = MemberFactory(program=program)
    earn(member, 100)
    return member


# --- rule 3: concurrent redemptions can't overspend -------------------------------------------


def test_twenty_simultaneous_redemptions_of_60_against_100_let_exactly_one_through(member_with_100_points):
    member = member_with_100_points

    results = run_together(
        20, lambda i: services.points_redeem(program=member.program, member_id=member.id, points=60, now=T0)
    )

    assert outcome_counts(results) == {"ok": 1, "InsufficientPoints": 19}
    assert available(member) == 40
    assert member.redeemed == 60
    assert LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.REDEEM).count() == 1
    assert_consistent()


# --- rule 4: idempotency keys under concurrency -------------------------------------------------


def test_twenty_simultaneous_earns_with_one_key_post_once_and_all_get_the_same_entries(program):
    member = MemberFactory(program=program)

    results = run_together(20, lambda i: earn(member, 10, idempotency_key="order-42"))

    assert outcome_counts(results) == {"ok": 20}
    entry_ids = {tuple(e.id for e in value.entries) for _, value in results}
    assert len(entry_ids) == 1
    [ids] = entry_ids
    assert len(ids) == 1
    assert sum(1 for _, value in results if not value.replayed) == 1
    assert LedgerEntry.objects.filter(member=member).count() == 1
    assert IdempotencyRecord.objects.filter(program=program, key="order-42").count() == 1
    assert available(member) == 10
    assert member.lifetime_earned == 10
    assert_consistent()


def test_twenty_simultaneous_earns_with_one_key_on_a_member_in_debt_post_once(program):
    """The same race through the general posting path (a member in debt can't take the
    single-statement credit): the key's unique index still lets one posting through."""
    member = MemberFactory(program=program)
    services.points_adjust(
        program=program, member_id=member.id, points=-5, reason="chargeback", actor=StaffFactory(), now=T0
    )

    results = run_together(20, lambda i: earn(member, 10, idempotency_key="order-43"))

    assert outcome_counts(results) == {"ok": 20}
    assert len({tuple(e.id for e in value.entries) for _, value in results}) == 1
    assert LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.EARN).count() == 1
    assert available(member) == 5
    assert_consistent()


def test_one_key_with_different_requests_concurrently_lets_one_win_and_refuses_the_others(program):
    member = MemberFactory(program=program)

    results = run_together(20, lambda i: earn(member, 10 + i, idempotency_key="order-7"))

    assert outcome_counts(results) == {"ok": 1, "IdempotencyConflict": 19}
    [winner] = [value for kind, value in results if kind == "ok"]
    assert not winner.replayed
    assert available(member) == winner.points
    assert LedgerEntry.objects.filter(member=member).count() == 1
    assert_consistent()


def test_one_key_used_concurrently_for_redemptions_of_different_members_posts_one_of_them(program):
    members = [MemberFactory(program=program) for _ in range(4)]
    for m in members:
        earn(m, 100)

    results = run_together(
        8,
        lambda i: services.points_redeem(
            program=program, member_id=members[i % 4].id, points=10, idempotency_key="coupon-1", now=T0
        ),
    )

    counts = outcome_counts(results)
    # Two threads per member: the winner's twin replays it, the six others conflict.
    assert counts == {"ok": 2, "IdempotencyConflict": 6}
    assert LedgerEntry.objects.filter(program=program, kind=LedgerEntry.Kind.REDEEM).count() == 1
    assert_consistent()


def test_simultaneous_retries_of_one_redemption_post_it_once(program):
    member = MemberFactory(program=program)
    earn(member, 1000)

    results = run_together(
        20,
        lambda i: services.points_redeem(
            program=program, member_id=member.id, points=60, idempotency_key="coupon-9", now=T0
        ),
    )

    assert outcome_counts(results) == {"ok": 20}
    assert len({tuple(e.id for e in value.entries) for _, value in results}) == 1
    assert available(member) == 940
    assert_consistent()


def test_simultaneous_retries_of_a_redemption_that_spends_the_balance_all_get_its_result(member_with_100_points):
    member = member_with_100_points

    results = run_together(
        20,
        lambda i: services.points_redeem(
            program=member.program, member_id=member.id, points=60, idempotency_key="coupon-10", now=T0
        ),
    )

    # Whatever happens, it is posted once...
    assert available(member) == 40
    assert_consistent()
    # ...and rule 4 wants every retry to get the first result.
    assert outcome_counts(results) == {"ok": 20}


# --- rule 2: one lock per member ----------------------------------------------------------------


def test_an_earn_on_one_member_does_not_wait_for_a_lock_on_another_but_waits_for_its_own(program):
    a, b = MemberFactory(program=program), MemberFactory(program=program)
    finished = {"a": threading.Event(), "b": threading.Event()}
    outcome: dict[str, Any] = {}

    def earn_in_thread(name: str, member: Member) -> threading.Thread:
        def run() -> None:
            try:
                outcome[name] = earn(member, 10)
            except Exception as exc:
                outcome[name] = exc
            finally:
                finished[name].set()
                connections.close_all()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    with transaction.atomic():
        # This connection holds member A's row lock, as a posting on A would.
        Member.objects.select_for_update().get(pk=a.pk)
        thread_a = earn_in_thread("a", a)
        thread_b = earn_in_thread("b", b)

        assert finished["b"].wait(timeout=JOIN_TIMEOUT), "an earn on B waited for a lock on A"
        assert not isinstance(outcome["b"], Exception), outcome["b"]
        # A's earn must be queued behind the lock held here, not done and not failed.
        assert not finished["a"].wait(timeout=0.5), "an earn on A went through while A was locked"
        assert backends_waiting_for_a_lock() == 1  # exactly the earn on A, queued on the row lock

    # The lock is released with the transaction: A's earn finishes.
    assert finished["a"].wait(timeout=JOIN_TIMEOUT)
    thread_a.join(JOIN_TIMEOUT)
    thread_b.join(JOIN_TIMEOUT)
    assert not isinstance(outcome["a"], Exception), outcome["a"]
    assert available(a) == 10
    assert available(b) == 10
    assert_consistent()


def test_a_redemption_waits_for_the_members_lock_and_then_sees_the_committed_balance(member_with_100_points):
    member = member_with_100_points
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def redeem() -> None:
        try:
            outcome["r"] = services.points_redeem(program=member.program, member_id=member.id, points=60, now=T0)
        except Exception as exc:
            outcome["r"] = exc
        finally:
            done.set()
            connections.close_all()

    thread = threading.Thread(target=redeem, daemon=True)
    with transaction.atomic():
        Member.objects.select_for_update().get(pk=member.pk)
        thread.start()
        assert backends_waiting_for_a_lock() == 1
        assert not done.is_set()
        # Spend 50 while the redemption waits: it must see 50 left, not the 100 it started with.
        services.points_redeem(program=member.program, member_id=member.id, points=50, now=T0)
    thread.join(JOIN_TIMEOUT)

    assert isinstance(outcome["r"], errors.InsufficientPoints)
    assert available(member) == 50
    assert_consistent()


# --- mixed traffic: no deadlock, no lost update ----------------------------------------------------


def test_transfers_both_ways_with_redemptions_and_earns_neither_deadlock_nor_break_the_ledger(program):
    a, b, c = (MemberFactory(program=program) for _ in range(3))
    for m in (a, b, c):
        earn(m, 500)
    pairs = [(a, b), (b, a), (b, c), (c, a), (a, c), (c, b)]
    rounds = 12

    def work(i: int) -> Counter:
        seen: Counter = Counter()
        for r in range(rounds):
            src, dst = pairs[(i + r) % len(pairs)]
            try:
                if i % 4 == 3:
                    services.points_redeem(program=program, member_id=src.id, points=7 + r, now=T0)
                    seen["redeemed"] += 7 + r
                elif i % 4 == 2 and r % 3 == 0:
                    earn(dst, 5)
                    seen["earned"] += 5
                else:
                    services.points_transfer(
                        program=program, from_member_id=src.id, to_member_id=dst.id, points=11 + r, now=T0
                    )
            except errors.InsufficientPoints:
                seen["short"] += 1
        return seen

    results = run_together(8, work)

    assert all(kind == "ok" for kind, _ in results), [v for k, v in results if k != "ok"]
    totals = sum((value for _, value in results), Counter())
    members = Member.objects.filter(pk__in=[a.pk, b.pk, c.pk])
    # Points are conserved: transfers move them, only redemptions and earns change the sum.
    assert sum(m.available for m in members) == 1500 + totals["earned"] - totals["redeemed"]
    assert sum(m.redeemed for m in members) == totals["redeemed"]
    assert all(m.available >= 0 for m in members)
    assert_consistent()


def test_concurrent_earns_and_debt_making_adjustments_on_one_member_keep_the_ledger_consistent(program):
    """Single-statement credits race against staff debits that leave a debt: every credit
    must either take the fast path (no debt) or pay the debt first; nothing is lost."""
    member = MemberFactory(program=program)
    staff = StaffFactory()

    def work(i: int) -> int:
        total = 0
        for r in range(10):
            if i % 2:
                services.points_adjust(
                    program=program, member_id=member.id, points=-(13 + r), reason="chargeback", actor=staff, now=T0
                )
                total -= 13 + r
            else:
                earn(member, 9 + r)
                total += 9 + r
        return total

    results = run_together(6, work)

    assert all(kind == "ok" for kind, _ in results), [v for k, v in results if k != "ok"]
    assert available(member) == sum(value for _, value in results)
    assert_consistent()


# --- rule 5 under concurrency: expiry racing redemptions and itself ------------------------------


@pytest.fixture
def members_with_expired_and_valid_points(db):
    """Ten members, each holding a lot of 50 points that expired before T0 and a valid lot of
    30 points. Nothing has run the expiry yet."""
    program = ProgramFactory(expiry_days=30, pending_days=0)
    members = [MemberFactory(program=program) for _ in range(10)]
    long_ago = T0 - dt.timedelta(days=45)
    for m in members:
        earn(m, 50, occurred_at=long_ago, now=long_ago)
        earn(m, 30, occurred_at=T0 - dt.timedelta(days=1))
    return program, members


def test_expiry_running_while_members_redeem_never_lets_expired_points_be_spent(members_with_expired_and_valid_points):
    program, members = members_with_expired_and_valid_points
    redeemers, others = members[:6], members[6:]
    # Per redeeming member: one thread asks for 40 (only possible with expired points), two ask
    # for 20 (one can succeed). One more thread runs the expiry in small chunks meanwhile.

    def work(i: int) -> Any:
        if i == 18:
            return services.points_expire(now=T0, chunk_size=2)
        points = 40 if i < 6 else 20
        return services.points_redeem(program=program, member_id=redeemers[i % 6].id, points=points, now=T0)

    results = run_together(19, work)

    redeem_results = results[:18]
    assert all(kind == "ok" or isinstance(v, errors.InsufficientPoints) for kind, v in redeem_results), results
    assert all(kind == "error" for kind, _ in redeem_results[:6]), "40 points were spent from 30 valid ones"
    assert outcome_counts(redeem_results[6:]) == {"ok": 6, "InsufficientPoints": 6}
    assert results[18][0] == "ok", results[18][1]
    for m in Member.objects.filter(pk__in=[m.pk for m in redeemers]):
        assert (m.available, m.expired, m.redeemed) == (10, 50, 20)
    for m in Member.objects.filter(pk__in=[m.pk for m in others]):
        assert (m.available, m.expired, m.redeemed) == (30, 50, 0)
    # Each expired lot was consumed exactly once, by a single expire entry's allocation.
    expired_lots = LedgerEntry.objects.filter(program=program, kind=LedgerEntry.Kind.EARN, expires_at__lte=T0)
    assert expired_lots.count() == len(members)
    for lot in expired_lots:
        consumptions = list(lot.consumptions.all())
        assert [(a.debit.kind, a.points) for a in consumptions] == [(LedgerEntry.Kind.EXPIRE, 50)]
    assert_consistent()


def test_two_expiry_runs_at_once_expire_each_lot_exactly_once(members_with_expired_and_valid_points):
    program, members = members_with_expired_and_valid_points

    results = run_together(3, lambda i: services.points_expire(now=T0, chunk_size=3))

    assert all(kind == "ok" for kind, _ in results), results
    assert sum(value.points for _, value in results) == 50 * len(members)
    assert all(m.expired == 50 and m.available == 30 for m in Member.objects.filter(program=program))
    assert sum(-e.points for e in LedgerEntry.objects.filter(program=program, kind=LedgerEntry.Kind.EXPIRE)) == 500
    assert_consistent()


def test_release_running_while_members_redeem_releases_each_lot_once(db):
    program = ProgramFactory(expiry_days=365, pending_days=7)
    members = [MemberFactory(program=program) for _ in range(8)]
    for m in members:
        earn(m, 40)  # pending until T0 + 7 days
        earn(m, 25, occurred_at=T0 + dt.timedelta(days=2), now=T0 + dt.timedelta(days=2))  # until T0 + 9 days
    later = T0 + dt.timedelta(days=7, hours=1)  # the first lot is due, the second is not

    def work(i: int) -> Any:
        if i >= 16:
            return services.points_release(now=later, chunk_size=3)
        return services.points_redeem(program=program, member_id=members[i % 8].id, points=30, now=later)

    results = run_together(18, work)

    assert all(kind == "ok" for kind, _ in results[16:]), results[16:]
    assert outcome_counts(results[:16]) == {"ok": 8, "InsufficientPoints": 8}
    assert sum(value.points for _, value in results[16:]) <= 8 * 40
    for m in Member.objects.filter(program=program):
        assert (m.available, m.pending, m.redeemed) == (10, 25, 30)
    assert LedgerEntry.objects.filter(program=program, points__gt=0, released_at__isnull=True).count() == 8
    assert_consistent()


def test_an_expiry_run_that_loses_a_race_for_a_lot_reports_only_the_lots_it_expired(
    members_with_expired_and_valid_points,
):
    program, members = members_with_expired_and_valid_points
    first = min(members, key=lambda m: m.pk)  # the job locks members in id order: it queues on this one
    outcome: dict[str, Any] = {}

    def expire() -> None:
        try:
            outcome["job"] = services.points_expire(now=T0, program=program)
        finally:
            connections.close_all()

    thread = threading.Thread(target=expire, daemon=True)
    with transaction.atomic():
        Member.objects.select_for_update().get(pk=first.pk)
        thread.start()
        assert backends_waiting_for_a_lock() == 1  # the job has picked its lots and waits
        # Meanwhile a redemption settles this member: it expires the due lot itself.
        services.points_redeem(program=program, member_id=first.id, points=1, now=T0)
    thread.join(JOIN_TIMEOUT)

    result = outcome["job"]
    assert_consistent()
    assert (result.points, result.members) == (450, 9)  # what it really expired
    assert result.lots == 9
