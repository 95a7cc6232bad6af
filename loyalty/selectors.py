"""Reads of the loyalty core that are more than one ORM call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection

from .models import LedgerEntry, Member

ENTRY = LedgerEntry._meta.db_table
MEMBER = Member._meta.db_table
ALLOC = "loyalty_allocation"


@dataclass(frozen=True)
class LedgerProblem:
    member_id: int
    check: str
    detail: str

    def __str__(self) -> str:
        return f"member {self.member_id}: {self.check}: {self.detail}"


# The checks below are written without joins, so that no statistics can lead the planner into
# a bad join order: each statement reads every table once (UNION ALL) and aggregates by member
# or by entry (HashAggregate or Sort + GroupAggregate, both linear or n log n whatever the row
# estimates). Right after a bulk load, or in a transaction that inserted what the statistics
# don't know of, the former joins could turn into a nested loop that re-ran an aggregate per
# entry (minutes instead of seconds).

# Balances recomputed from the entries. available = remainders of released lots plus the
# unpaid (negative) remainders of debits; pending = remainders of unreleased lots; the sum of
# all points must equal available + pending; the other totals are sums by kind (a negative
# reversal is a refund taking back earned points, a positive one a cancelled redemption).
# The member rows and the entries of the id range are aggregated together by member id.
_BALANCE_CHECK = f"""
WITH per_member AS (
    SELECT member_id,
        max(c_available) AS c_available, max(c_pending) AS c_pending, max(c_lifetime_earned) AS c_lifetime_earned,
        max(c_redeemed) AS c_redeemed, max(c_expired) AS c_expired, bool_or(is_member) AS is_member,
        coalesce(sum(remaining) FILTER (WHERE points > 0 AND released_at IS NOT NULL), 0)
          + coalesce(sum(remaining) FILTER (WHERE points < 0), 0) AS available,
        coalesce(sum(remaining) FILTER (WHERE points > 0 AND released_at IS NULL), 0) AS pending,
        coalesce(sum(points), 0) AS total,
        coalesce(sum(points) FILTER (WHERE kind = 'earn'), 0)
          + coalesce(sum(points) FILTER (WHERE kind = 'reversal' AND points < 0), 0) AS lifetime_earned,
        coalesce(-sum(points) FILTER (WHERE kind = 'redeem'), 0)
          - coalesce(sum(points) FILTER (WHERE kind = 'reversal' AND points > 0), 0) AS redeemed,
        coalesce(-sum(points) FILTER (WHERE kind = 'expire'), 0) AS expired
    FROM (
        SELECT id AS member_id, true AS is_member,
            available AS c_available, pending AS c_pending, lifetime_earned AS c_lifetime_earned,
            redeemed AS c_redeemed, expired AS c_expired,
            NULL::varchar AS kind, NULL::bigint AS points, NULL::bigint AS remaining,
            NULL::timestamptz AS released_at
        FROM {MEMBER} WHERE id BETWEEN %(lo)s AND %(hi)s
        UNION ALL
        SELECT member_id, false, NULL, NULL, NULL, NULL, NULL, kind, points, remaining, released_at
        FROM {ENTRY} WHERE member_id BETWEEN %(lo)s AND %(hi)s
    ) AS rows
    GROUP BY member_id
)
SELECT member_id, c_available, c_pending, c_lifetime_earned, c_redeemed, c_expired,
       available, pending, lifetime_earned, redeemed, expired, total
FROM per_member
WHERE is_member AND (
    c_available <> available OR c_pending <> pending OR c_lifetime_earned <> lifetime_earned
    OR c_redeemed <> redeemed OR c_expired <> expired OR total <> available + pending)
ORDER BY member_id
"""

# Allocations, checked per entry of the id range: every entry's consumed part must equal its
# allocations: a lot's points - remaining is what debits took from it; a debit's |points| -
# unpaid is what lots covered. An over-consumed lot fails the first test (and the table's CHECK
# keeps remaining >= 0).
# Pairing, checked per allocation whose debit is in the range: it must link a debit (points < 0)
# and a lot (points > 0) of the same member; a lot outside the range belongs to another member.
# One statement: the entries of the range and both ends of every allocation are aggregated by
# entry id (`per_entry`, with the allocations of which the entry is the debit or the lot), then
# the allocations of those entries by allocation id. Rows are tagged 'a' (allocations) and 'p'
# (pairing); a pairing row's lot member is NULL when the lot is outside the range.
_ALLOCATION_AND_PAIRING_CHECK = f"""
WITH per_entry AS MATERIALIZED (
    SELECT entry_id, max(member_id) AS member_id, max(points) AS points, max(remaining) AS remaining,
        sum(alloc_points) FILTER (WHERE role = 'l') AS taken,
        sum(alloc_points) FILTER (WHERE role = 'd') AS covered,
        array_agg(alloc_id) FILTER (WHERE role = 'd') AS debit_allocs,
        array_agg(other_id) FILTER (WHERE role = 'd') AS debit_lots,
        array_agg(alloc_id) FILTER (WHERE role = 'l') AS lot_allocs
    FROM (
        SELECT id AS entry_id, 'e' AS role, member_id, points, remaining,
            NULL::bigint AS alloc_id, NULL::bigint AS other_id, NULL::bigint AS alloc_points
        FROM {ENTRY} WHERE member_id BETWEEN %(lo)s AND %(hi)s
        UNION ALL
        SELECT lot_id, 'l', NULL, NULL, NULL, id, debit_id, points FROM {ALLOC}
        UNION ALL
        SELECT debit_id, 'd', NULL, NULL, NULL, id, lot_id, points FROM {ALLOC}
    ) AS rows
    GROUP BY entry_id
    HAVING bool_or(role = 'e')
), ends AS (
    SELECT unnest(debit_allocs) AS alloc_id, entry_id AS debit_id, unnest(debit_lots) AS lot_id,
        member_id AS debit_member, points AS debit_points,
        NULL::bigint AS lot_member, NULL::bigint AS lot_points
    FROM per_entry WHERE debit_allocs IS NOT NULL
    UNION ALL
    SELECT unnest(lot_allocs), NULL, entry_id, NULL, NULL, member_id, points
    FROM per_entry WHERE lot_allocs IS NOT NULL
), pairs AS (
    SELECT alloc_id, max(debit_id) AS debit_id, max(lot_id) AS lot_id,
        max(debit_member) AS debit_member, max(debit_points) AS debit_points,
        max(lot_member) AS lot_member, max(lot_points) AS lot_points
    FROM ends GROUP BY alloc_id
)
SELECT 'a' AS tag, member_id, entry_id, points, remaining, coalesce(taken, 0), coalesce(covered, 0),
    NULL::bigint, NULL::bigint, NULL::bigint
FROM per_entry
WHERE (points > 0 AND (points - remaining <> coalesce(taken, 0) OR covered IS NOT NULL))
   OR (points < 0 AND (-points + remaining <> coalesce(covered, 0) OR taken IS NOT NULL))
UNION ALL
SELECT 'p', debit_member, alloc_id, NULL, NULL, NULL, NULL, debit_id, lot_id, lot_member
FROM pairs
WHERE debit_id IS NOT NULL
  AND (debit_points >= 0 OR lot_points <= 0 OR lot_member IS DISTINCT FROM debit_member)
ORDER BY 1, 2, 3
"""


def _member_ranges(chunk: int) -> Iterator[tuple[int, int]]:
    with connection.cursor() as cur:
        cur.execute(f"SELECT min(id), max(id) FROM {MEMBER}")
        lo, hi = cur.fetchone()
    if lo is None:
        return
    start = lo
    while start <= hi:
        yield start, start + chunk - 1
        start += chunk


def ledger_problems(*, chunk: int = 200_000) -> Iterator[LedgerProblem]:
    """Check every member's ledger (docs/architecture.md rule 7), member id range by range so memory
    stays bounded at any size. Yields one problem per mismatch; nothing when all is well.
    Queries: 2 set-based, join-free statements per range of `chunk` member ids (plus one
    lookup by primary key when an allocation links two members)."""
    for lo, hi in _member_ranges(chunk):
        params = {"lo": lo, "hi": hi}
        with connection.cursor() as cur:
            cur.execute(_BALANCE_CHECK, params)
            for row in cur.fetchall():
                names = ("available", "pending", "lifetime_earned", "redeemed", "expired")
                cached, computed = row[1:6], row[6:11]
                diffs = [
                    f"{n} cached {c} != ledger {v}" for n, c, v in zip(names, cached, computed, strict=True) if c != v
                ]
                if row[11] != row[6] + row[7]:
                    diffs.append(f"sum of entries {row[11]} != remainders {row[6] + row[7]}")
                yield LedgerProblem(row[0], "balance", "; ".join(diffs))
            cur.execute(_ALLOCATION_AND_PAIRING_CHECK, params)
            rows = cur.fetchall()
            pairs = [row for row in rows if row[0] == "p"]
            # A lot outside the range: its member is read by primary key (a handful of rows).
            outside = sorted({row[8] for row in pairs if row[9] is None})
            lot_members = {}
            if outside:
                cur.execute(f"SELECT id, member_id FROM {ENTRY} WHERE id = ANY(%s)", [outside])
                lot_members = dict(cur.fetchall())
        for tag, member_id, entry_id, points, remaining, taken, covered, *_ in rows:
            if tag != "a":
                continue
            if points > 0:
                detail = f"lot {entry_id} of {points} has {remaining} left but allocations took {taken}" + (
                    " and it is used as a debit" if covered else ""
                )
            else:
                detail = f"debit {entry_id} of {points} with {remaining} unpaid has allocations of {covered}" + (
                    " and it is used as a lot" if taken else ""
                )
            yield LedgerProblem(member_id, "allocations", detail)
        for _tag, member_id, alloc_id, *_unused, debit_id, lot_id, lot_member in pairs:
            if lot_member is None:
                lot_member = lot_members.get(lot_id)
            yield LedgerProblem(
                member_id,
                "pairing",
                f"allocation {alloc_id} links debit {debit_id} to lot {lot_id} of member {lot_member}",
            )


def member_ledger(*, member: Member):
    """A member's entries, newest first (API ledger, admin)."""
    return LedgerEntry.objects.filter(member=member).select_related("activity", "created_by").order_by("-id")
