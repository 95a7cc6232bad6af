"""The accountant's reports over the ledger: outstanding points and their value (aged by
expiry), the monthly roll-forward reconciled to the ledger, breakage per earn month, and the
IFRS 15 deferred revenue of points (docs/liability.md).

Everything is read with set-based SQL over `loyalty_ledgerentry` and `loyalty_allocation`,
one query per figure family for all the programs asked for; nothing here writes. Day and month
boundaries are the program's local midnights. A report covers the programs it is given (the
views pass `programs_for(user)`), grouped by `Program.currency`: amounts of different
currencies are never added.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection

from dashboard import ifrs15
from loyalty.models import Program

CENT = Decimal("0.01")
AGING_BUCKETS = (
    ("within_30", "Expire within 30 days"),
    ("within_90", "Expire in 31-90 days"),
    ("later", "Expire later"),
    ("never", "Never expire"),
)
# Roll-forward movements: (key, ledger kind, label). Debits are shown as positive deductions.
MOVEMENTS = (
    ("earned", "earn", "Earned"),
    ("redeemed", "redeem", "Redeemed"),
    ("expired", "expire", "Expired"),
    ("adjusted", "adjust", "Adjustments (net)"),
    ("reversed", "reversal", "Reversals (net: refunds -, cancelled redemptions +)"),
    ("transferred", "transfer", "Transfers (net)"),
)
DEDUCTIONS = {"redeemed", "expired"}


# ---------------------------------------------------------------- periods


def month_segments(start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date]]:
    """The calendar months of [start, end] (inclusive days), cut at the period's ends:
    2026-01-15..2026-03-10 -> (01-15, 01-31), (02-01, 02-28), (03-01, 03-10)."""
    if end < start:
        raise ValueError("the period ends before it starts")
    segments = []
    first = start
    while first <= end:
        next_month = (first.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        last = min(end, next_month - dt.timedelta(days=1))
        segments.append((first, last))
        first = last + dt.timedelta(days=1)
    return segments


def end_moment(program: Program, day: dt.date) -> dt.datetime:
    """The end of local day `day`: the next local midnight (a report "as of" `day` counts
    everything written before it)."""
    return program.start_of_day(day + dt.timedelta(days=1))


def _program_arrays(programs: Sequence[Program]) -> tuple[list[int], list[str]]:
    return [p.pk for p in programs], [p.timezone for p in programs]


def _rows(sql: str, params: dict) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# ---------------------------------------------------------------- roll-forward

ROLLFORWARD_SQL = """
WITH p AS (SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(tzs)s::text[]) AS tz)
SELECT e.program_id,
       CASE WHEN e.created_at < (%(start)s::date::timestamp AT TIME ZONE p.tz) THEN NULL
            ELSE date_trunc('month', e.created_at AT TIME ZONE p.tz)::date END AS month,
       e.kind,
       SUM(e.points)
FROM loyalty_ledgerentry e
JOIN p ON p.id = e.program_id
WHERE e.created_at < (%(end)s::date::timestamp AT TIME ZONE p.tz)
GROUP BY 1, 2, 3
"""


@dataclass
class RollRow:
    """One month of the roll-forward, in points (deductions positive)."""

    start: dt.date
    end: dt.date
    opening: int = 0
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    adjusted: int = 0
    reversed: int = 0
    transferred: int = 0
    ledger_closing: int = 0  # the sum of every entry written before the month's end

    @property
    def closing(self) -> int:
        return (
            self.opening + self.earned - self.redeemed - self.expired + self.adjusted + self.reversed + self.transferred
        )

    @property
    def difference(self) -> int:
        return self.ledger_closing - self.closing

    def add(self, other: RollRow) -> None:
        for name in ("opening", "earned", "redeemed", "expired", "adjusted", "reversed", "transferred"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ledger_closing += other.ledger_closing


def rollforward(programs: Sequence[Program], start: dt.date, end: dt.date) -> dict[int, list[RollRow]]:
    """Per program, one row per month of [start, end]: opening + earned - redeemed - expired
    + adjustments + reversals + transfers = closing, each month's opening the previous closing.
    `ledger_closing` is the plain sum of all entries before the month's end, whatever their
    kind: a closing that differs from it means the movements miss something."""
    segments = month_segments(start, end)
    if not programs:
        return {}
    ids, tzs = _program_arrays(programs)
    params = {"ids": ids, "tzs": tzs, "start": start, "end": end + dt.timedelta(days=1)}
    opening: dict[int, int] = defaultdict(int)
    moves: dict[tuple[int, dt.date], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    kind_to_key = {kind: key for key, kind, _ in MOVEMENTS}
    for program_id, month, kind, total in _rows(ROLLFORWARD_SQL, params):
        points = int(total)
        if month is None:
            opening[program_id] += points
            continue
        bucket = moves[(program_id, month)]
        bucket["_all"] += points
        key = kind_to_key.get(kind)
        if key is not None:
            bucket[key] += -points if key in DEDUCTIONS else points
    result: dict[int, list[RollRow]] = {}
    for program in programs:
        rows = []
        carried = opening[program.pk]
        ledger = opening[program.pk]
        for first, last in segments:
            bucket = moves.get((program.pk, first.replace(day=1)), {})
            row = RollRow(start=first, end=last, opening=carried)
            for key, _, _ in MOVEMENTS:
                setattr(row, key, bucket.get(key, 0))
            ledger += bucket.get("_all", 0)
            row.ledger_closing = ledger
            rows.append(row)
            carried = row.closing
        result[program.pk] = rows
    return result


# ---------------------------------------------------------------- aging

# Now (or later): the lots' and debts' remainders, through the partial open-lot/debt indexes.
AGING_NOW_SQL = """
WITH p AS (
    SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(at)s::timestamptz[]) AS at,
           unnest(%(b30)s::timestamptz[]) AS b30, unnest(%(b90)s::timestamptz[]) AS b90
)
SELECT e.program_id,
       COALESCE(SUM(e.remaining) FILTER (WHERE e.points > 0 AND e.expires_at <= p.b30), 0),
       COALESCE(SUM(e.remaining) FILTER (WHERE e.points > 0 AND e.expires_at > p.b30 AND e.expires_at <= p.b90), 0),
       COALESCE(SUM(e.remaining) FILTER (WHERE e.points > 0 AND e.expires_at > p.b90), 0),
       COALESCE(SUM(e.remaining) FILTER (WHERE e.points > 0 AND e.expires_at IS NULL), 0),
       COALESCE(SUM(e.remaining) FILTER (WHERE e.points > 0 AND e.available_at > p.at), 0),
       COALESCE(-SUM(e.remaining) FILTER (WHERE e.points < 0), 0)
FROM loyalty_ledgerentry e
JOIN p ON p.id = e.program_id
WHERE e.remaining <> 0
GROUP BY 1
"""

# A past day: each lot's points less what was taken from it before then, each debt's points
# less what was paid before then (allocations are dated).
AGING_PAST_SQL = """
WITH p AS (
    SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(at)s::timestamptz[]) AS at,
           unnest(%(b30)s::timestamptz[]) AS b30, unnest(%(b90)s::timestamptz[]) AS b90
),
taken AS (  -- per lot, the points debits took from it before the moment
    SELECT a.lot_id AS id, SUM(a.points) AS points
    FROM loyalty_allocation a
    JOIN loyalty_ledgerentry l ON l.id = a.lot_id
    JOIN p ON p.id = l.program_id
    WHERE a.created_at < p.at
    GROUP BY 1
),
paid AS (  -- per debit, the points of it that lots covered before the moment
    SELECT a.debit_id AS id, SUM(a.points) AS points
    FROM loyalty_allocation a
    JOIN loyalty_ledgerentry d ON d.id = a.debit_id
    JOIN p ON p.id = d.program_id
    WHERE a.created_at < p.at
    GROUP BY 1
),
open AS (
    SELECT e.program_id, e.points, e.expires_at, e.available_at, p.at, p.b30, p.b90,
           CASE WHEN e.points > 0 THEN e.points - COALESCE(taken.points, 0)
                ELSE e.points + COALESCE(paid.points, 0) END AS rest
    FROM loyalty_ledgerentry e
    JOIN p ON p.id = e.program_id
    LEFT JOIN taken ON taken.id = e.id
    LEFT JOIN paid ON paid.id = e.id
    WHERE e.created_at < p.at
)
SELECT program_id,
       COALESCE(SUM(rest) FILTER (WHERE points > 0 AND expires_at <= b30), 0),
       COALESCE(SUM(rest) FILTER (WHERE points > 0 AND expires_at > b30 AND expires_at <= b90), 0),
       COALESCE(SUM(rest) FILTER (WHERE points > 0 AND expires_at > b90), 0),
       COALESCE(SUM(rest) FILTER (WHERE points > 0 AND expires_at IS NULL), 0),
       COALESCE(SUM(rest) FILTER (WHERE points > 0 AND available_at > at), 0),
       COALESCE(-SUM(rest) FILTER (WHERE points < 0), 0)
FROM open
WHERE rest <> 0
GROUP BY 1
"""


@dataclass
class Aging:
    """Points held at a moment, by when they expire; `pending` is the part not yet available
    (inside the buckets); `debt` the points members owe (not in the buckets)."""

    within_30: int = 0
    within_90: int = 0
    later: int = 0
    never: int = 0
    pending: int = 0
    debt: int = 0

    @property
    def held(self) -> int:
        return self.within_30 + self.within_90 + self.later + self.never

    @property
    def net(self) -> int:
        return self.held - self.debt

    def add(self, other: Aging) -> None:
        for name in ("within_30", "within_90", "later", "never", "pending", "debt"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def aging(
    programs: Sequence[Program], day: dt.date, *, now: dt.datetime, from_history: bool = False
) -> dict[int, Aging]:
    """Points held at the end of local day `day`, by expiry: within 30 days of it (lots already
    past their expiry but not yet taken by the expiry job included), 31-90 days, later, never.
    From the current remainders when `day` ends at or after `now`; else (or `from_history`)
    rebuilt from the dated allocations."""
    if not programs:
        return {}
    ends = {p.pk: end_moment(p, day) for p in programs}
    params = {
        "ids": [p.pk for p in programs],
        "at": [ends[p.pk] for p in programs],
        "b30": [end_moment(p, day + dt.timedelta(days=30)) for p in programs],
        "b90": [end_moment(p, day + dt.timedelta(days=90)) for p in programs],
    }
    current = not from_history and all(moment >= now for moment in ends.values())
    result = {p.pk: Aging() for p in programs}
    for program_id, *figures in _rows(AGING_NOW_SQL if current else AGING_PAST_SQL, params):
        result[program_id] = Aging(*(int(f) for f in figures))
    return result


def cached_balances(programs: Sequence[Program]) -> dict[int, int]:
    """Per program, the members' cached balances (available + pending): the third witness."""
    rows = _rows(
        "SELECT program_id, COALESCE(SUM(available + pending), 0) FROM loyalty_member "
        "WHERE program_id = ANY(%(ids)s) GROUP BY 1",
        {"ids": [p.pk for p in programs]},
    )
    result = {p.pk: 0 for p in programs}
    result.update({pid: int(total) for pid, total in rows})
    return result


# ---------------------------------------------------------------- the liability report


@dataclass
class ProgramLiability:
    program: Program
    aging: Aging
    rows: list[RollRow]
    value_per_point: Decimal
    differences: list[str] = field(default_factory=list)

    @property
    def closing(self) -> int:
        return self.rows[-1].closing if self.rows else 0

    @property
    def value(self) -> Decimal:
        return (self.aging.held * self.value_per_point).quantize(CENT)

    def bucket_value(self, name: str) -> Decimal:
        return (getattr(self.aging, name) * self.value_per_point).quantize(CENT)


@dataclass
class CurrencyLiability:
    currency: str
    programs: list[ProgramLiability]
    aging: Aging
    rows: list[RollRow]

    @property
    def value(self) -> Decimal:
        return sum((p.value for p in self.programs), Decimal(0))

    @property
    def debt_value(self) -> Decimal:
        return sum(((p.aging.debt * p.value_per_point).quantize(CENT) for p in self.programs), Decimal(0))

    def bucket_value(self, name: str) -> Decimal:
        return sum((p.bucket_value(name) for p in self.programs), Decimal(0))

    @property
    def differences(self) -> list[str]:
        return [d for p in self.programs for d in p.differences]


@dataclass
class LiabilityReport:
    start: dt.date
    end: dt.date
    currencies: list[CurrencyLiability]

    @property
    def differences(self) -> list[str]:
        return [d for c in self.currencies for d in c.differences]


def by_currency(programs: Iterable[Program]) -> dict[str, list[Program]]:
    grouped: dict[str, list[Program]] = defaultdict(list)
    for program in sorted(programs, key=lambda p: (p.currency, p.name, p.pk)):
        grouped[program.currency].append(program)
    return dict(grouped)


def liability_report(programs: Iterable[Program], start: dt.date, end: dt.date, *, now: dt.datetime) -> LiabilityReport:
    """Outstanding points and their value at the end of `end`, aged, with the monthly
    roll-forward of [start, end], per program and per currency, reconciled three ways: each
    month's closing against the plain sum of the ledger, the period's closing against the lots
    and debts left, and (when the period reaches `now`) against the members' cached balances."""
    programs = list(programs)
    rolls = rollforward(programs, start, end)
    ages = aging(programs, end, now=now)
    reaches_now = any(end_moment(p, end) >= now for p in programs)
    cached = cached_balances(programs) if reaches_now else {}
    currencies = []
    for currency, members in by_currency(programs).items():
        items = []
        total_aging, total_rows = Aging(), [RollRow(start=a, end=b) for a, b in month_segments(start, end)]
        for program in members:
            item = ProgramLiability(
                program=program, aging=ages[program.pk], rows=rolls[program.pk], value_per_point=program.point_value
            )
            for row in item.rows:
                if row.difference:
                    item.differences.append(
                        f"{program.name}: the roll-forward closes {row.start:%B %Y} at {row.closing:,} points, "
                        f"the ledger at {row.ledger_closing:,} ({row.difference:+,})."
                    )
            if item.aging.net != item.closing:
                item.differences.append(
                    f"{program.name}: lots held less debts on {end:%Y-%m-%d} = {item.aging.net:,} points, "
                    f"the roll-forward's closing = {item.closing:,} ({item.aging.net - item.closing:+,})."
                )
            if program.pk in cached and end_moment(program, end) >= now and cached[program.pk] != item.closing:
                item.differences.append(
                    f"{program.name}: the members' balances add up to {cached[program.pk]:,} points, "
                    f"the roll-forward's closing = {item.closing:,} ({cached[program.pk] - item.closing:+,})."
                )
            total_aging.add(item.aging)
            for total, row in zip(total_rows, item.rows, strict=True):
                total.add(row)
            items.append(item)
        currencies.append(CurrencyLiability(currency=currency, programs=items, aging=total_aging, rows=total_rows))
    return LiabilityReport(start=start, end=end, currencies=currencies)


# ---------------------------------------------------------------- breakage

BREAKAGE_LOTS_SQL = """
WITH p AS (SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(tzs)s::text[]) AS tz)
SELECT l.program_id, date_trunc('month', l.occurred_at AT TIME ZONE p.tz)::date AS month,
       SUM(l.points), SUM(l.remaining),
       BOOL_AND(l.expires_at IS NOT NULL AND l.expires_at <= %(now)s)
FROM loyalty_ledgerentry l
JOIN p ON p.id = l.program_id
WHERE l.kind = 'earn'
GROUP BY 1, 2
"""

BREAKAGE_USES_SQL = """
WITH p AS (SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(tzs)s::text[]) AS tz)
SELECT l.program_id, date_trunc('month', l.occurred_at AT TIME ZONE p.tz)::date AS month, d.kind, SUM(a.points)
FROM loyalty_allocation a
JOIN loyalty_ledgerentry l ON l.id = a.lot_id
JOIN loyalty_ledgerentry d ON d.id = a.debit_id
JOIN p ON p.id = l.program_id
WHERE l.kind = 'earn'
GROUP BY 1, 2, 3
"""


@dataclass
class BreakageRow:
    """Points earned in one month and what became of them so far."""

    month: dt.date
    earned: int = 0
    redeemed: int = 0
    expired: int = 0
    other: int = 0  # refunds, transfers, negative adjustments, debts paid
    outstanding: int = 0
    settled: bool = True  # every lot of the month past its expiry date, nothing left outstanding

    @property
    def breakage(self) -> Decimal | None:
        """Share of the month's spent-or-lapsed points that lapsed: expired / (expired + redeemed)."""
        used = self.expired + self.redeemed
        return (Decimal(self.expired) / used).quantize(Decimal("0.0001")) if used else None

    def add(self, other: BreakageRow) -> None:
        self.earned += other.earned
        self.redeemed += other.redeemed
        self.expired += other.expired
        self.other += other.other
        self.outstanding += other.outstanding
        self.settled = self.settled and other.settled


def breakage_rows(programs: Sequence[Program], *, now: dt.datetime) -> dict[int, list[BreakageRow]]:
    """Per program, per month the points were earned (local month of the activity), the points
    earned, redeemed, expired, used otherwise and still outstanding (earn lots only; points
    moved by a transfer or given back by a cancelled redemption form new lots, not counted here)."""
    if not programs:
        return {}
    ids, tzs = _program_arrays(programs)
    params = {"ids": ids, "tzs": tzs, "now": now}
    rows: dict[tuple[int, dt.date], BreakageRow] = {}
    for program_id, month, earned, outstanding, settled in _rows(BREAKAGE_LOTS_SQL, params):
        # Settled: every lot past its expiry date and taken by the expiry job (nothing left).
        rows[(program_id, month)] = BreakageRow(
            month=month, earned=int(earned), outstanding=int(outstanding), settled=bool(settled) and not outstanding
        )
    for program_id, month, kind, points in _rows(BREAKAGE_USES_SQL, params):
        row = rows[(program_id, month)]
        if kind == "redeem":
            row.redeemed += int(points)
        elif kind == "expire":
            row.expired += int(points)
        else:
            row.other += int(points)
    result: dict[int, list[BreakageRow]] = {p.pk: [] for p in programs}
    for (program_id, _), row in sorted(rows.items(), key=lambda item: (item[0][0], item[0][1])):
        result[program_id].append(row)
    return result


def observed_breakage(rows: Iterable[BreakageRow]) -> Decimal | None:
    """Breakage of the settled months together (weighted by points), or None without one."""
    total = BreakageRow(month=dt.date.min)
    found = False
    for row in rows:
        if row.settled and row.expired + row.redeemed:
            total.add(row)
            found = True
    return total.breakage if found else None


@dataclass
class RedemptionEstimate:
    rate: Decimal
    source: str  # "setting", "observed" or "default"
    observed_breakage: Decimal | None


def expected_redemption(program: Program, rows: Iterable[BreakageRow]) -> RedemptionEstimate:
    """The expected-redemption rate IFRS 15 uses: the program's setting if given, else 1 minus
    the observed breakage of settled months, else 1 (no breakage assumed)."""
    observed = observed_breakage(rows)
    if program.expected_redemption_rate is not None:
        return RedemptionEstimate(Decimal(program.expected_redemption_rate), "setting", observed)
    if observed is not None:
        return RedemptionEstimate(Decimal(1) - observed, "observed", observed)
    return RedemptionEstimate(Decimal(1), "default", None)


@dataclass
class ProgramBreakage:
    program: Program
    rows: list[BreakageRow]
    estimate: RedemptionEstimate


@dataclass
class CurrencyBreakage:
    currency: str
    programs: list[ProgramBreakage]
    rows: list[BreakageRow]


def breakage_report(
    programs: Iterable[Program], start: dt.date, end: dt.date, *, now: dt.datetime
) -> list[CurrencyBreakage]:
    """Breakage of the earn months within [start, end] per program and currency; the expected
    rate of each program is estimated from all its settled months."""
    programs = list(programs)
    all_rows = breakage_rows(programs, now=now)
    result = []
    for currency, members in by_currency(programs).items():
        items = []
        totals: dict[dt.date, BreakageRow] = {}
        for program in members:
            estimate = expected_redemption(program, all_rows[program.pk])
            shown = [r for r in all_rows[program.pk] if start.replace(day=1) <= r.month <= end]
            items.append(ProgramBreakage(program=program, rows=shown, estimate=estimate))
            for row in shown:
                totals.setdefault(row.month, BreakageRow(month=row.month)).add(row)
        result.append(
            CurrencyBreakage(currency=currency, programs=items, rows=sorted(totals.values(), key=lambda r: r.month))
        )
    return result


# ---------------------------------------------------------------- deferred revenue (IFRS 15)

# Points earned by purchases carry part of the sale's price. Per purchase (all its earn lots):
# points' SSP = points x price per point x expected rate; allocated = amount x SSP / (amount + SSP)
# (ifrs15.allocate, summed unrounded). Then, at two moments (period start S, end E): allocated,
# points redeemed from those lots, and points still held in them.
DEFERRED_SQL = """
WITH p AS (
    SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(k)s::numeric[]) AS k,
           unnest(%(s)s::timestamptz[]) AS s, unnest(%(e)s::timestamptz[]) AS e
),
lots AS (
    SELECT l.id, l.program_id, l.points, l.created_at, l.activity_id, act.amount, p.k, p.s, p.e
    FROM loyalty_ledgerentry l
    JOIN p ON p.id = l.program_id
    JOIN loyalty_activity act ON act.id = l.activity_id
    WHERE l.kind = 'earn' AND l.activity_id IS NOT NULL AND act.type = 'purchase' AND act.amount > 0
      AND l.created_at < p.e
),
sales AS (
    SELECT program_id, activity_id, MIN(created_at) AS at, MAX(amount) AS amount, SUM(points) AS points,
           MAX(k) AS k, MAX(s) AS s
    FROM lots GROUP BY 1, 2
),
alloc AS (
    SELECT program_id,
           SUM(amount * points * k / NULLIF(amount + points * k, 0)) FILTER (WHERE at < s) AS alloc_s,
           SUM(amount * points * k / NULLIF(amount + points * k, 0)) AS alloc_e,
           SUM(amount) FILTER (WHERE at >= s) AS sales_in_period
    FROM sales GROUP BY 1
),
issued AS (
    SELECT program_id, SUM(points) FILTER (WHERE created_at < s) AS issued_s, SUM(points) AS issued_e
    FROM lots GROUP BY 1
),
used AS (
    SELECT lots.program_id,
           SUM(a.points) FILTER (WHERE a.created_at < lots.s AND d.kind = 'redeem') AS redeemed_s,
           SUM(a.points) FILTER (WHERE a.created_at < lots.e AND d.kind = 'redeem') AS redeemed_e,
           SUM(a.points) FILTER (WHERE a.created_at < lots.s) AS used_s,
           SUM(a.points) FILTER (WHERE a.created_at < lots.e) AS used_e
    FROM lots
    JOIN loyalty_allocation a ON a.lot_id = lots.id
    JOIN loyalty_ledgerentry d ON d.id = a.debit_id
    GROUP BY 1
)
SELECT issued.program_id, alloc.alloc_s, alloc.alloc_e, alloc.sales_in_period, issued.issued_s, issued.issued_e,
       used.redeemed_s, used.redeemed_e, used.used_s, used.used_e
FROM issued
JOIN alloc USING (program_id)
LEFT JOIN used USING (program_id)
"""


@dataclass
class Moment:
    """The points from purchases at one moment: money allocated to them, points issued,
    redeemed and still held, and the revenue recognised to date."""

    allocated: Decimal = Decimal(0)
    issued: int = 0
    redeemed: int = 0
    outstanding: int = 0
    expected_total: Decimal = Decimal(0)
    recognised: Decimal = Decimal(0)


@dataclass
class ProgramDeferred:
    program: Program
    estimate: RedemptionEstimate
    price_per_point: Decimal
    opening: Moment
    closing: Moment
    sales: Decimal = Decimal(0)

    @property
    def ssp_per_point(self) -> Decimal:
        return self.price_per_point * self.estimate.rate

    @property
    def allocated_in_period(self) -> Decimal:
        return self.closing.allocated - self.opening.allocated

    @property
    def revenue(self) -> Decimal:
        return self.closing.recognised - self.opening.recognised

    @property
    def opening_liability(self) -> Decimal:
        return self.opening.allocated - self.opening.recognised

    @property
    def closing_liability(self) -> Decimal:
        return self.closing.allocated - self.closing.recognised


@dataclass
class CurrencyDeferred:
    currency: str
    programs: list[ProgramDeferred]

    def total(self, name: str) -> Decimal:
        return sum((getattr(p, name) for p in self.programs), Decimal(0))


def _moment(allocated: object, issued: object, redeemed: object, used: object, rate: Decimal) -> Moment:
    allocated_d = Decimal(allocated or 0).quantize(CENT)
    issued_i, redeemed_i, used_i = int(issued or 0), int(redeemed or 0), int(used or 0)
    outstanding = issued_i - used_i
    expected = ifrs15.expected_total_redemptions(redeemed_i, outstanding, rate)
    recognised = ifrs15.recognised_to_date(allocated_d, redeemed_i, expected)
    return Moment(allocated_d, issued_i, redeemed_i, outstanding, expected, recognised)


def deferred_revenue_report(
    programs: Iterable[Program], start: dt.date, end: dt.date, *, now: dt.datetime
) -> list[CurrencyDeferred]:
    """Per program and currency, the contract liability of points from purchases at the start
    and end of [start, end], what was allocated to new points and the revenue recognised in the
    period (the difference of the revenue recognised to date at both ends: with today's
    estimate, a revised estimate's catch-up lands in this period)."""
    programs = list(programs)
    if not programs:
        return []
    history = breakage_rows(programs, now=now)
    estimates = {p.pk: expected_redemption(p, history[p.pk]) for p in programs}
    prices = {
        p.pk: Decimal(p.point_standalone_price if p.point_standalone_price is not None else p.point_value)
        for p in programs
    }
    params = {
        "ids": [p.pk for p in programs],
        "k": [prices[p.pk] * estimates[p.pk].rate for p in programs],
        "s": [p.start_of_day(start) for p in programs],
        "e": [end_moment(p, end) for p in programs],
    }
    found = {row[0]: row[1:] for row in _rows(DEFERRED_SQL, params)}
    result = []
    for currency, members in by_currency(programs).items():
        items = []
        for program in members:
            rate = estimates[program.pk].rate
            alloc_s, alloc_e, sales, issued_s, issued_e, red_s, red_e, used_s, used_e = found.get(program.pk, (0,) * 9)
            items.append(
                ProgramDeferred(
                    program=program,
                    estimate=estimates[program.pk],
                    price_per_point=prices[program.pk],
                    opening=_moment(alloc_s, issued_s, red_s, used_s, rate),
                    closing=_moment(alloc_e, issued_e, red_e, used_e, rate),
                    sales=Decimal(sales or 0),
                )
            )
        result.append(CurrencyDeferred(currency=currency, programs=items))
    return result
