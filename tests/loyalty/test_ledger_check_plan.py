"""The ledger check (`ledger_problems`, `manage.py verify_ledger`) keeps a linear plan whatever
the planner's statistics say.

The case that made it run for many minutes: the tables were ANALYZEd while their committed
contents were empty (autovacuum on a fresh database, or production right before a bulk load),
then a transaction loaded thousands of entries and checked them. With joins, the planner
trusted "empty" and re-ran an aggregate of the allocations once per entry. The statements are
now join-free; these tests look at their plans (not at the clock) in exactly that situation,
and check that the results do not depend on how the member ids are cut into ranges.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from loyalty import selectors
from loyalty.models import LedgerEntry
from loyalty.selectors import ledger_problems

from .factories import MemberFactory, ProgramFactory
from .test_jobs import T0, earn, lots_of, redeem

pytestmark = pytest.mark.django_db

LEDGER_TABLES = ("loyalty_member", "loyalty_ledgerentry", "loyalty_allocation")
MEMBERS = 3_000  # x 5 entries and 2 allocations each
BASE = 10_000_000  # ids far above the sequences', so nothing later in the test collides

# Per member m: 4 lots (the 4th pending for even m) and 1 redemption that took the whole 1st
# lot and half of the 2nd; p_k is the points of lot k.
P = "(2 + ((m * 31 + {k} * 17) %% 99))"
MEMBERS_SQL = f"""
INSERT INTO loyalty_member (id, program_id, external_id, email, first_name, last_name, birthday, referral_code,
    referred_by_id, status, enrollment_channel, email_consent, user_id, enrolled_at,
    available, pending, lifetime_earned, redeemed, expired)
SELECT {BASE} + m, %(program)s, 'plan-' || m, 'plan' || m || '@example.invalid', 'Plan', 'Member ' || m, NULL,
    'PLAN' || m, NULL, 'active', 'import', false, NULL, %(t)s,
    ({P.format(k=2)} - {P.format(k=2)} / 2) + {P.format(k=3)} + CASE WHEN m %% 2 = 1 THEN {P.format(k=4)} ELSE 0 END,
    CASE WHEN m %% 2 = 0 THEN {P.format(k=4)} ELSE 0 END,
    {P.format(k=1)} + {P.format(k=2)} + {P.format(k=3)} + {P.format(k=4)},
    {P.format(k=1)} + {P.format(k=2)} / 2, 0
FROM generate_series(1, %(n)s) AS m
"""
ENTRIES_SQL = f"""
INSERT INTO loyalty_ledgerentry (id, program_id, member_id, kind, points, remaining, created_at, occurred_at,
    available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, created_by_id)
SELECT {BASE} + (m - 1) * 5 + k, %(program)s, {BASE} + m,
    CASE WHEN k = 5 THEN 'redeem' ELSE 'earn' END,
    CASE WHEN k = 5 THEN -({P.format(k=1)} + {P.format(k=2)} / 2) ELSE pk END,
    CASE k WHEN 1 THEN 0 WHEN 2 THEN pk - pk / 2 WHEN 5 THEN 0 ELSE pk END,
    %(t)s, %(t)s,
    CASE WHEN k = 5 THEN NULL WHEN k = 4 AND m %% 2 = 0 THEN %(t)s + interval '10 days' ELSE %(t)s END,
    CASE WHEN k = 5 OR (k = 4 AND m %% 2 = 0) THEN NULL ELSE %(t)s END,
    CASE WHEN k = 5 THEN NULL ELSE %(t)s + interval '200 days' END,
    'plan', '', NULL, NULL, NULL
FROM generate_series(1, %(n)s) AS m, generate_series(1, 5) AS k,
    LATERAL (SELECT 2 + ((m * 31 + k * 17) %% 99) AS pk) AS v
"""
ALLOCATIONS_SQL = f"""
INSERT INTO loyalty_allocation (id, debit_id, lot_id, points, created_at)
SELECT {BASE} + (m - 1) * 2 + k, {BASE} + (m - 1) * 5 + 5, {BASE} + (m - 1) * 5 + k,
    CASE k WHEN 1 THEN {P.format(k=1)} ELSE {P.format(k=2)} / 2 END, %(t)s
FROM generate_series(1, %(n)s) AS m, generate_series(1, 2) AS k
"""

JOINS = {"Nested Loop", "Hash Join", "Merge Join"}


def _plan_nodes(sql: str, params: dict) -> list[dict]:
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def _estimated_rows(table: str) -> int:
    with connection.cursor() as cur:
        cur.execute(f"EXPLAIN (FORMAT JSON) SELECT * FROM {table}")
        return cur.fetchone()[0][0]["Plan"]["Plan Rows"]


def test_the_checks_plan_no_join_after_analyze_of_empty_tables_and_a_load_in_the_transaction():
    # The check runs on temporary copies of the three tables (same columns and indexes), which
    # shadow the real ones for unqualified names in this session: their statistics are exactly
    # what this test sets (autovacuum never touches temporary tables), and the ANALYZE of
    # empty tables below doesn't change the real tables' statistics for the tests that follow.
    with connection.cursor() as cur:
        for table in LEDGER_TABLES:
            cur.execute(f"CREATE TEMPORARY TABLE {table} (LIKE public.{table} INCLUDING ALL) ON COMMIT DROP")
            cur.execute(f"ANALYZE {table}")  # what autovacuum does on a fresh database
        cur.execute(
            "SELECT count(*) FROM pg_stats WHERE tablename = ANY(%s) AND schemaname LIKE 'pg_temp%%'",
            [list(LEDGER_TABLES)],
        )
        assert cur.fetchone()[0] == 0  # analysed, and nothing is known about the columns

    program = ProgramFactory(expiry_days=365, pending_days=0)
    params = {"program": program.id, "n": MEMBERS, "t": T0}
    with connection.cursor() as cur:  # the load, in the test's (uncommitted) transaction
        cur.execute(MEMBERS_SQL, params)
        cur.execute(ENTRIES_SQL, params)
        cur.execute(ALLOCATIONS_SQL, params)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM loyalty_ledgerentry")  # the temporary table
        assert cur.fetchone()[0] == MEMBERS * 5

    # The planner's view of the range: far fewer rows than there are (which led joins astray).
    ranges = {"lo": BASE + 1, "hi": BASE + 200_000}
    balance = _plan_nodes(selectors._BALANCE_CHECK, ranges)
    allocations = _plan_nodes(selectors._ALLOCATION_AND_PAIRING_CHECK, ranges)
    scans = [n for n in balance if n.get("Relation Name") == "loyalty_ledgerentry"]
    assert scans
    assert all(n["Plan Rows"] < MEMBERS for n in scans), "the statistics were expected to under-estimate"

    for nodes in (balance, allocations):
        kinds = {n["Node Type"] for n in nodes}
        assert not kinds & JOINS, f"a join in the check's plan: {sorted(kinds)}"
        # No subplan re-run per row either: each table is read by one scan per use.
        assert not any(n.get("Parent Relationship") == "SubPlan" for n in nodes)
    assert sorted(n["Relation Name"] for n in allocations if "Relation Name" in n) == [
        "loyalty_allocation",
        "loyalty_allocation",
        "loyalty_ledgerentry",
    ]

    # And the check itself: a sound ledger, then one corrupted balance and one stray allocation.
    assert list(ledger_problems()) == []
    with connection.cursor() as cur:
        cur.execute("UPDATE loyalty_member SET available = available + 1 WHERE id = %s", [BASE + 7])
        cur.execute(
            "INSERT INTO loyalty_allocation (debit_id, lot_id, points, created_at) VALUES (%s, %s, 1, %s)",
            [BASE + 10 * 5 + 5, BASE + 10 * 5 + 3, T0],
        )
    found = [(p.member_id, p.check) for p in ledger_problems(chunk=1000)]
    assert found == [
        (BASE + 7, "balance"),
        (BASE + 11, "allocations"),  # lot 3 of member 11: allocations took 1 it still has
        (BASE + 11, "allocations"),  # its redemption: covered by one point more than its size
    ]


@pytest.fixture
def two_members():
    """Two members of one program, each with two lots and a redemption taken from its first lot."""
    program = ProgramFactory(expiry_days=30, pending_days=0)
    first, second = MemberFactory(program=program), MemberFactory(program=program)
    for member in (first, second):
        earn(member, 100, at=T0)
        earn(member, 50, at=T0 + dt.timedelta(days=1))
        redeem(member, 30, now=T0 + dt.timedelta(days=1))
    return first, second


def _link(debit: LedgerEntry, lot: LedgerEntry, points: int = 1) -> int:
    with connection.cursor() as cur:  # allocations are insert-only, so a stray insert is possible
        cur.execute(
            "INSERT INTO loyalty_allocation (debit_id, lot_id, points, created_at) VALUES (%s, %s, %s, now()) "
            "RETURNING id",
            [debit.id, lot.id, points],
        )
        return cur.fetchone()[0]


def _redemption(member) -> LedgerEntry:
    return LedgerEntry.objects.get(member=member, kind=LedgerEntry.Kind.REDEEM)


@pytest.mark.parametrize("chunk", [1, 200_000])
def test_an_allocation_to_another_members_lot_names_that_member_whatever_the_ranges(two_members, chunk):
    first, second = two_members
    debit, foreign_lot = _redemption(first), lots_of(second)[1]
    allocation = _link(debit, foreign_lot)

    pairing = [str(p) for p in ledger_problems(chunk=chunk) if p.check == "pairing"]

    assert pairing == [
        f"member {first.id}: pairing: allocation {allocation} links debit {debit.id} to lot {foreign_lot.id} "
        f"of member {second.id}"
    ]


def test_a_debit_used_as_a_lot_is_reported_by_both_checks(two_members):
    first, second = two_members
    debit, other_debit = _redemption(first), _redemption(second)
    allocation = _link(other_debit, debit)

    problems = [str(p) for p in ledger_problems()]

    assert (
        f"member {second.id}: pairing: allocation {allocation} links debit {other_debit.id} to lot {debit.id} "
        f"of member {first.id}"
    ) in problems
    assert any(f"debit {debit.id} of -30" in p and "used as a lot" in p for p in problems)


def test_the_results_are_the_same_for_any_range_size(two_members):
    first, second = two_members
    with connection.cursor() as cur:
        cur.execute("UPDATE loyalty_member SET redeemed = redeemed + 2 WHERE id = %s", [second.id])
        cur.execute("UPDATE loyalty_ledgerentry SET remaining = remaining - 5 WHERE id = %s", [lots_of(first)[1].id])
    _link(_redemption(first), lots_of(second)[0], points=3)

    by_range = {chunk: [str(p) for p in ledger_problems(chunk=chunk)] for chunk in (1, 2, 1000)}

    assert by_range[1]
    assert sorted(by_range[1]) == sorted(by_range[2]) == sorted(by_range[1000])
    assert {p.split(":")[1].strip() for p in by_range[1000]} == {"balance", "allocations", "pairing"}


def test_a_member_without_entries_is_checked_too():
    member = MemberFactory(program=ProgramFactory())
    with connection.cursor() as cur:
        cur.execute("UPDATE loyalty_member SET expired = 4 WHERE id = %s", [member.id])

    assert [str(p) for p in ledger_problems()] == [f"member {member.id}: balance: expired cached 4 != ledger 0"]
