"""The daily roll-ups (`rollup_stats`, docs/dashboard.md): one `DailyStat` row per program and
local day, and `DailyBreakdown` rows splitting some figures by channel, reward, tier or rule.

Every measure is one aggregate query over the whole range of days (grouped by the local day in
the program's time zone), so backfilling a year costs a few index-range scans, not one query per
day or per member. Stocks at a day's end (members, outstanding points, members per tier) are the
previous day's row plus the day's movements; the first day of a program starts from the
movements before it. Flows are dated by:

- ledger entries and allocations: `created_at` (when the points moved; the ledger is
  append-only, so a finished day never changes);
- members: `enrolled_at`; activities (purchases, revenue, activity): `occurred_at`; earning-rule
  awards: `occurred_at`; tier moves: `at`. An activity reported late for a day already rolled up
  is counted when that day is recomputed (`--since`).

Outstanding points follow the ledger's lots exactly: `pending` is what is left of lots not yet
released, `debt` the unpaid part of debits, `available` the rest (total - pending + debt).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from loyalty.models import Activity, Allocation, LedgerEntry, Member, Program
from rewards.models import Redemption
from tiers.models import Tier, TierChange
from workflows.models import EarningRule, RuleAward

from .models import DailyBreakdown, DailyStat

ENTRY = LedgerEntry._meta.db_table
ALLOC = Allocation._meta.db_table
MEMBER = Member._meta.db_table
ACTIVITY = Activity._meta.db_table
TIER = Tier._meta.db_table
TIER_CHANGE = TierChange._meta.db_table
REDEMPTION = Redemption._meta.db_table
RULE = EarningRule._meta.db_table
AWARD = RuleAward._meta.db_table

# Activities that count as a member being active (a birthday is reported by the system).
PASSIVE_ACTIVITY_TYPES = ("birthday",)
ACTIVE_WINDOWS = (30, 90)

FLOWS = ("earned", "redeemed", "expired", "adjusted_up", "adjusted_down", "reversed", "restored", "transferred")
STOCKS = ("members", "available", "pending", "debt")
INFINITY = "-infinity"


def local_day(column: str) -> str:
    return f"({column} AT TIME ZONE %(tz)s)::date"


@dataclass
class RollupResult:
    program: str
    first_day: dt.date | None
    last_day: dt.date | None
    days: int = 0

    def __str__(self) -> str:
        if not self.days:
            return f"{self.program}: up to date"
        return f"{self.program}: rolled up {self.days} days, {self.first_day} to {self.last_day}"


@dataclass
class Opening:
    """The stocks at the start of the range (the previous day's end)."""

    members: int = 0
    total: int = 0
    pending: int = 0
    debt: int = 0
    tiers: dict[str, int] = field(default_factory=dict)


def last_finished_day(program: Program, now: dt.datetime) -> dt.date:
    """The last local day of `program` that is over at `now`."""
    return program.local_date(now) - dt.timedelta(days=1)


def first_day(program: Program) -> dt.date:
    """The program's first local day: its creation, or its first member's enrolment if earlier
    (imported or demo history)."""
    first = Member.objects.filter(program=program).order_by("enrolled_at").values_list("enrolled_at", flat=True)[:1]
    moments = [program.created_at, *first]
    return min(program.local_date(m) for m in moments)


def rollup_program(
    program: Program,
    *,
    now: dt.datetime | None = None,
    since: dt.date | None = None,
    force: bool = False,
) -> RollupResult:
    """Roll up the finished days of `program` not rolled up yet (or, with `since`, every day from
    `since`; with `force`, every day from the first). Idempotent; one transaction."""
    now = now or timezone.now()
    last = last_finished_day(program, now)
    start = first_day(program)
    if since is not None and not force:
        start = max(start, since)
    else:
        done = DailyStat.objects.filter(program=program).order_by("-day").values_list("day", flat=True).first()
        if done is not None and not force:
            start = max(start, done + dt.timedelta(days=1))
    if start > last:
        return RollupResult(program.slug, None, None)
    with transaction.atomic():
        with connection.cursor() as cur:
            # One run per program at a time (the beat task and a manual backfill).
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [7313, program.pk])
        compute_days(program, start, last, now=now)
    return RollupResult(program.slug, start, last, (last - start).days + 1)


def rollup_all(
    *,
    now: dt.datetime | None = None,
    since: dt.date | None = None,
    force: bool = False,
    programs: Iterable[Program] | None = None,
) -> list[RollupResult]:
    now = now or timezone.now()
    todo = programs if programs is not None else Program.objects.order_by("pk")
    return [rollup_program(p, now=now, since=since, force=force) for p in todo]


# --- the computation ---------------------------------------------------------------------------


def _rows(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _bounds(tz: str, d0: dt.date, d1: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The moments the local days d0 .. d1 start and end (PostgreSQL's reading of the zone)."""
    (t0, t1), *_ = _rows(
        "SELECT %(d0)s::timestamp AT TIME ZONE %(tz)s, (%(d1)s::date + 1)::timestamp AT TIME ZONE %(tz)s",
        {"tz": tz, "d0": d0, "d1": d1},
    )
    return t0, t1


def _ledger_movements(params: dict[str, Any]) -> dict[dt.date, dict[str, int]]:
    """Per local day in [lo, hi): the flows, the net change, and the changes of pending and debt."""
    out: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    day = local_day("created_at")
    for row in _rows(
        f"""
        SELECT {day},
          coalesce(sum(points) FILTER (WHERE kind = 'earn'), 0),
          coalesce(-sum(points) FILTER (WHERE kind = 'redeem'), 0),
          coalesce(-sum(points) FILTER (WHERE kind = 'expire'), 0),
          coalesce(sum(points) FILTER (WHERE kind = 'adjust' AND points > 0), 0),
          coalesce(-sum(points) FILTER (WHERE kind = 'adjust' AND points < 0), 0),
          coalesce(-sum(points) FILTER (WHERE kind = 'reversal' AND points < 0), 0),
          coalesce(sum(points) FILTER (WHERE kind = 'reversal' AND points > 0), 0),
          coalesce(sum(points) FILTER (WHERE kind = 'transfer' AND points > 0), 0),
          sum(points),
          coalesce(sum(points) FILTER (WHERE points < 0), 0),
          coalesce(sum(points) FILTER (WHERE points > 0 AND (released_at IS NULL OR released_at > created_at)), 0)
        FROM {ENTRY}
        WHERE program_id = %(p)s AND created_at >= %(lo)s AND created_at < %(hi)s
        GROUP BY 1""",
        params,
    ):
        d = out[row[0]]
        for name, value in zip(FLOWS, row[1:9], strict=True):
            d[name] += value
        d["total"] += row[9]
        d["debt"] -= row[10]
        d["pending"] += row[11]
    # Allocations: each pays part of a debit (less debt); those taken from a lot still pending
    # lower the pending points.
    for day_, alloc, from_pending in _rows(
        f"""
        SELECT {local_day("a.created_at")}, sum(a.points),
          coalesce(sum(a.points) FILTER (
            WHERE (l.released_at IS NULL OR l.released_at > l.created_at)
              AND a.created_at < coalesce(l.released_at, 'infinity')), 0)
        FROM {ALLOC} a JOIN {ENTRY} l ON l.id = a.lot_id
        WHERE l.program_id = %(p)s AND a.created_at >= %(lo)s AND a.created_at < %(hi)s
        GROUP BY 1""",
        params,
    ):
        out[day_]["debt"] -= alloc
        out[day_]["pending"] -= from_pending
    # Releases: what was left of a pending lot when it was released becomes available.
    for day_, released in _rows(
        f"""
        SELECT {local_day("l.released_at")},
          sum(l.points - coalesce((SELECT sum(a.points) FROM {ALLOC} a
                                   WHERE a.lot_id = l.id AND a.created_at < l.released_at), 0))
        FROM {ENTRY} l
        WHERE l.program_id = %(p)s AND l.points > 0 AND l.released_at > l.created_at
          AND l.released_at >= %(lo)s AND l.released_at < %(hi)s
        GROUP BY 1""",
        params,
    ):
        out[day_]["pending"] -= released
    return out


def _tier_movements(params: dict[str, Any]) -> tuple[dict[dt.date, dict[str, int]], dict[dt.date, dict[str, int]]]:
    """Per local day: the change of members per tier, and the moves by kind."""
    per_tier: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    moves: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day_, from_id, to_id, from_pos, to_pos, n in _rows(
        f"""
        SELECT {local_day("c.at")}, c.from_tier_id, c.to_tier_id, ft.position, tt.position, count(*)
        FROM {TIER_CHANGE} c
        JOIN {MEMBER} m ON m.id = c.member_id
        LEFT JOIN {TIER} ft ON ft.id = c.from_tier_id
        LEFT JOIN {TIER} tt ON tt.id = c.to_tier_id
        WHERE m.program_id = %(p)s AND c.at >= %(lo)s AND c.at < %(hi)s
          AND c.from_tier_id IS DISTINCT FROM c.to_tier_id
        GROUP BY 1, 2, 3, 4, 5""",
        params,
    ):
        if from_id is not None:
            per_tier[day_][str(from_id)] -= n
        if to_id is not None:
            per_tier[day_][str(to_id)] += n
        moves[day_][move_kind(from_pos, to_pos)] += n
    return per_tier, moves


def move_kind(from_position: int | None, to_position: int | None) -> str:
    """join: into a tier from none; upgrade: to a higher tier; downgrade: lower, or out of tiers."""
    if from_position is None:
        return "join"
    if to_position is not None and to_position > from_position:
        return "upgrade"
    return "downgrade"


def _opening(program: Program, start: dt.date, t0: dt.datetime, params: dict[str, Any]) -> Opening:
    previous = DailyStat.objects.filter(program=program, day=start - dt.timedelta(days=1)).first()
    if previous is not None:
        tiers = dict(
            DailyBreakdown.objects.filter(
                program=program, day=previous.day, dimension=DailyBreakdown.Dimension.TIER
            ).values_list("key", "count")
        )
        return Opening(
            members=previous.members,
            total=previous.available + previous.pending - previous.debt,
            pending=previous.pending,
            debt=previous.debt,
            tiers=tiers,
        )
    before = {**params, "lo": INFINITY, "hi": t0}
    opening = Opening(members=Member.objects.filter(program=program, enrolled_at__lt=t0).count())
    for d in _ledger_movements(before).values():
        opening.total += d["total"]
        opening.pending += d["pending"]
        opening.debt += d["debt"]
    per_tier, _moves = _tier_movements(before)
    for d in per_tier.values():
        for key, n in d.items():
            opening.tiers[key] = opening.tiers.get(key, 0) + n
    return opening


def compute_days(program: Program, d0: dt.date, d1: dt.date, *, now: dt.datetime) -> None:
    """Replace the roll-ups of `program` for the local days d0 .. d1 (caller's transaction)."""
    tz = program.timezone
    t0, t1 = _bounds(tz, d0, d1)
    params = {"p": program.pk, "tz": tz, "lo": t0, "hi": t1}
    opening = _opening(program, d0, t0, params)

    ledger = _ledger_movements(params)
    per_tier, moves = _tier_movements(params)

    enrol: dict[dt.date, dict[str, int]] = defaultdict(dict)
    for day_, channel, n in _rows(
        f"SELECT {local_day('enrolled_at')}, enrollment_channel, count(*) FROM {MEMBER} "
        "WHERE program_id = %(p)s AND enrolled_at >= %(lo)s AND enrolled_at < %(hi)s GROUP BY 1, 2",
        params,
    ):
        enrol[day_][channel] = n

    purchases: dict[dt.date, tuple[int, Decimal]] = {
        day_: (n, amount)
        for day_, n, amount in _rows(
            f"""SELECT {local_day("occurred_at")},
                  count(*) FILTER (WHERE type = 'purchase'),
                  coalesce(sum(amount) FILTER (WHERE type = 'purchase'), 0)
                  - coalesce(sum(amount) FILTER (WHERE type = 'refund'), 0)
                FROM {ACTIVITY}
                WHERE program_id = %(p)s AND type IN ('purchase', 'refund')
                  AND occurred_at >= %(lo)s AND occurred_at < %(hi)s
                GROUP BY 1""",
            params,
        )
    }

    rewards: dict[dt.date, dict[str, tuple[int, int]]] = defaultdict(dict)
    for day_, reward_id, n, pts in _rows(
        f"""SELECT {local_day("e.created_at")}, r.reward_id, count(*), -sum(e.points)
            FROM {ENTRY} e JOIN {REDEMPTION} r ON r.entry_id = e.id
            WHERE e.program_id = %(p)s AND e.kind = 'redeem' AND e.created_at >= %(lo)s AND e.created_at < %(hi)s
            GROUP BY 1, 2""",
        params,
    ):
        rewards[day_][str(reward_id)] = (n, pts)

    rules: dict[dt.date, dict[str, tuple[int, int]]] = defaultdict(dict)
    for day_, rule_id, n, pts in _rows(
        f"""SELECT {local_day("w.occurred_at")}, w.rule_id, count(*), sum(w.points)
            FROM {AWARD} w JOIN {RULE} r ON r.id = w.rule_id
            WHERE r.program_id = %(p)s AND w.occurred_at >= %(lo)s AND w.occurred_at < %(hi)s
            GROUP BY 1, 2""",
        params,
    ):
        rules[day_][str(rule_id)] = (n, int(pts))

    active = _active_members(program, d0, d1, params)

    DailyStat.objects.filter(program=program, day__gte=d0, day__lte=d1).delete()
    DailyBreakdown.objects.filter(program=program, day__gte=d0, day__lte=d1).delete()
    stats: list[DailyStat] = []
    parts: list[DailyBreakdown] = []
    members, total, pending, debt = opening.members, opening.total, opening.pending, opening.debt
    tiers = dict(opening.tiers)
    day_ = d0
    Dim = DailyBreakdown.Dimension
    while day_ <= d1:
        led = ledger.get(day_, {})
        enrolments = sum(enrol.get(day_, {}).values())
        members += enrolments
        total += led.get("total", 0)
        pending += led.get("pending", 0)
        debt += led.get("debt", 0)
        for key, n in per_tier.get(day_, {}).items():
            tiers[key] = tiers.get(key, 0) + n
        n_purchases, revenue = purchases.get(day_, (0, Decimal(0)))
        stats.append(
            DailyStat(
                program=program,
                day=day_,
                enrolments=enrolments,
                members=members,
                active_30=active[30].get(day_, 0),
                active_90=active[90].get(day_, 0),
                **{name: led.get(name, 0) for name in FLOWS},
                available=total - pending + debt,
                pending=pending,
                debt=debt,
                redemptions=sum(n for n, _ in rewards.get(day_, {}).values()),
                purchases=n_purchases,
                revenue=revenue,
                computed_at=now,
            )
        )
        parts += [
            DailyBreakdown(program=program, day=day_, dimension=Dim.CHANNEL, key=k, count=n)
            for k, n in enrol.get(day_, {}).items()
        ]
        parts += [
            DailyBreakdown(program=program, day=day_, dimension=Dim.REWARD, key=k, count=n, points=pts)
            for k, (n, pts) in rewards.get(day_, {}).items()
        ]
        parts += [
            DailyBreakdown(program=program, day=day_, dimension=Dim.RULE, key=k, count=n, points=pts)
            for k, (n, pts) in rules.get(day_, {}).items()
        ]
        parts += [
            DailyBreakdown(program=program, day=day_, dimension=Dim.TIER_MOVE, key=k, count=n)
            for k, n in moves.get(day_, {}).items()
        ]
        parts += [
            DailyBreakdown(program=program, day=day_, dimension=Dim.TIER, key=k, count=n) for k, n in tiers.items() if n
        ]
        day_ += dt.timedelta(days=1)
    DailyStat.objects.bulk_create(stats, batch_size=1000)
    DailyBreakdown.objects.bulk_create(parts, batch_size=5000)


def _active_members(
    program: Program, d0: dt.date, d1: dt.date, params: dict[str, Any]
) -> dict[int, dict[dt.date, int]]:
    """Members with an activity in the N days up to each day (N = 30, 90), from the intervals
    between a member's activity days: +1 on an activity day, -1 N days later or at the next
    activity day, whichever comes first; the running sum on a day is the count."""
    widest = max(ACTIVE_WINDOWS)
    a0, _ = _bounds(program.timezone, d0 - dt.timedelta(days=widest - 1), d0)
    ends = " UNION ALL ".join(
        f"SELECT least(day + {n}, coalesce(nxt, day + {n})) AS day, "
        + ", ".join("-1" if m == n else "0" for m in ACTIVE_WINDOWS)
        + " FROM n"
        for n in ACTIVE_WINDOWS
    )
    starts = "SELECT day, " + ", ".join("1" for _ in ACTIVE_WINDOWS) + " FROM n"
    cols = ", ".join(f"w{n}" for n in ACTIVE_WINDOWS)
    rows = _rows(
        f"""
        WITH a AS (
          SELECT DISTINCT member_id, {local_day("occurred_at")} AS day FROM {ACTIVITY}
          WHERE program_id = %(p)s AND occurred_at >= %(a0)s AND occurred_at < %(hi)s
            AND NOT (type = ANY(%(passive)s))),
        n AS (SELECT day, lead(day) OVER (PARTITION BY member_id ORDER BY day) AS nxt FROM a),
        ev({"day, " + cols}) AS ({starts} UNION ALL {ends})
        SELECT day, {", ".join(f"sum(w{n})" for n in ACTIVE_WINDOWS)} FROM ev GROUP BY day ORDER BY day""",
        {**params, "a0": a0, "passive": list(PASSIVE_ACTIVITY_TYPES)},
    )
    out: dict[int, dict[dt.date, int]] = {n: {} for n in ACTIVE_WINDOWS}
    running = dict.fromkeys(ACTIVE_WINDOWS, 0)
    i = 0
    day_ = d0
    while day_ <= d1:
        while i < len(rows) and rows[i][0] <= day_:
            for j, n in enumerate(ACTIVE_WINDOWS):
                running[n] += rows[i][1 + j]
            i += 1
        for n in ACTIVE_WINDOWS:
            out[n][day_] = running[n]
        day_ += dt.timedelta(days=1)
    return out
