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


# Balances recomputed from the entries. available = remainders of released lots plus the
# unpaid (negative) remainders of debits; pending = remainders of unreleased lots; the sum of
# all points must equal available + pending; the other totals are sums by kind (a negative
# reversal is a refund taking back earned points, a positive one a cancelled redemption).
_BALANCE_CHECK = f"""
WITH sums AS (
    SELECT member_id,
        coalesce(sum(remaining) FILTER (WHERE points > 0 AND released_at IS NOT NULL), 0)
          + coalesce(sum(remaining) FILTER (WHERE points < 0), 0) AS available,
        coalesce(sum(remaining) FILTER (WHERE points > 0 AND released_at IS NULL), 0) AS pending,
        coalesce(sum(points), 0) AS total,
        coalesce(sum(points) FILTER (WHERE kind = 'earn'), 0)
          + coalesce(sum(points) FILTER (WHERE kind = 'reversal' AND points < 0), 0) AS lifetime_earned,
        coalesce(-sum(points) FILTER (WHERE kind = 'redeem'), 0)
          - coalesce(sum(points) FILTER (WHERE kind = 'reversal' AND points > 0), 0) AS redeemed,
        coalesce(-sum(points) FILTER (WHERE kind = 'expire'), 0) AS expired
    FROM {ENTRY} WHERE member_id BETWEEN %(lo)s AND %(hi)s GROUP BY member_id
)
SELECT m.id, m.available, m.pending, m.lifetime_earned, m.redeemed, m.expired,
       coalesce(s.available, 0), coalesce(s.pending, 0), coalesce(s.lifetime_earned, 0),
       coalesce(s.redeemed, 0), coalesce(s.expired, 0), coalesce(s.total, 0)
FROM {MEMBER} m LEFT JOIN sums s ON s.member_id = m.id
WHERE m.id BETWEEN %(lo)s AND %(hi)s AND (
    m.available <> coalesce(s.available, 0) OR m.pending <> coalesce(s.pending, 0)
    OR m.lifetime_earned <> coalesce(s.lifetime_earned, 0) OR m.redeemed <> coalesce(s.redeemed, 0)
    OR m.expired <> coalesce(s.expired, 0)
    OR coalesce(s.total, 0) <> coalesce(s.available, 0) + coalesce(s.pending, 0))
"""

# Every entry's consumed part must equal its allocations: a lot's points - remaining is what
# debits took from it; a debit's |points| - unpaid is what lots covered. Allocations must link
# a debit and a lot of the same member. An over-consumed lot fails the first test (and the
# table's CHECK keeps remaining >= 0).
_ALLOCATION_CHECK = f"""
WITH taken AS (
    SELECT a.lot_id, sum(a.points) AS pts FROM {ALLOC} a JOIN {ENTRY} l ON l.id = a.lot_id
    WHERE l.member_id BETWEEN %(lo)s AND %(hi)s GROUP BY a.lot_id
), covered AS (
    SELECT a.debit_id, sum(a.points) AS pts FROM {ALLOC} a JOIN {ENTRY} d ON d.id = a.debit_id
    WHERE d.member_id BETWEEN %(lo)s AND %(hi)s GROUP BY a.debit_id
)
SELECT e.member_id, e.id, e.points, e.remaining, coalesce(t.pts, 0), coalesce(c.pts, 0)
FROM {ENTRY} e
LEFT JOIN taken t ON t.lot_id = e.id
LEFT JOIN covered c ON c.debit_id = e.id
WHERE e.member_id BETWEEN %(lo)s AND %(hi)s AND (
    (e.points > 0 AND (e.points - e.remaining <> coalesce(t.pts, 0) OR c.pts IS NOT NULL))
    OR (e.points < 0 AND (-e.points + e.remaining <> coalesce(c.pts, 0) OR t.pts IS NOT NULL)))
"""

_PAIRING_CHECK = f"""
SELECT d.member_id, a.id, d.id, l.id, d.points, l.points, l.member_id
FROM {ALLOC} a JOIN {ENTRY} d ON d.id = a.debit_id JOIN {ENTRY} l ON l.id = a.lot_id
WHERE d.member_id BETWEEN %(lo)s AND %(hi)s
  AND (d.points >= 0 OR l.points <= 0 OR d.member_id <> l.member_id)
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
    """Check every member's ledger (DESIGN.md rule 7), member id range by range so memory
    stays bounded at any size. Yields one problem per mismatch; nothing when all is well.
    Queries: 3 set-based statements per range of `chunk` member ids."""
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
            cur.execute(_ALLOCATION_CHECK, params)
            for member_id, entry_id, points, remaining, taken, covered in cur.fetchall():
                if points > 0:
                    detail = f"lot {entry_id} of {points} has {remaining} left but allocations took {taken}" + (
                        " and it is used as a debit" if covered else ""
                    )
                else:
                    detail = f"debit {entry_id} of {points} with {remaining} unpaid has allocations of {covered}" + (
                        " and it is used as a lot" if taken else ""
                    )
                yield LedgerProblem(member_id, "allocations", detail)
            cur.execute(_PAIRING_CHECK, params)
            for member_id, alloc_id, debit_id, lot_id, _dp, _lp, lot_member in cur.fetchall():
                yield LedgerProblem(
                    member_id,
                    "pairing",
                    f"allocation {alloc_id} links debit {debit_id} to lot {lot_id} of member {lot_member}",
                )


def member_ledger(*, member: Member):
    """A member's entries, newest first (API ledger, admin)."""
    return LedgerEntry.objects.filter(member=member).select_related("activity", "created_by").order_by("-id")
