"""Replay: the stored activities of a period run through a rule set (the live rules or a draft)
with zero writes (docs/simulation.md).

`replay` reads the period's activities once, in the order they were reported (activity id),
through a server-side cursor in a read-only transaction, and runs each through
`rules.evaluate` (the code `activity_report` runs) with the caps counted as `activity_report`
counts them (the member's awards of the rule in the day, week and month of the activity, in
the program's time zone, and in all, over the activities reported before it) and the member's
tier at the time from the tier history (`selectors.member_tier_at`'s rule). Replaying the live
rules therefore gives back the ledger's earn entries of the period (tests/workflows/
test_simulation.py); a draft gives what it would have paid instead.

Approximations (said in docs/simulation.md): awards of activities that occurred before the
period count for the caps as the live rules gave them; the tier of each activity is the one
the member really had (a draft that pays more does not upgrade anyone earlier); tier changes
are estimated from the tiers' thresholds at the end of the period.
"""

from __future__ import annotations

import bisect
import copy
import csv
import datetime as dt
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.apps import apps
from django.db import connection, transaction

from loyalty.models import Program

from . import rules, selectors
from .models import EarningRule, RuleAward

# Members by the points the rule set gives them in the period: (label, lowest points).
BUCKETS: tuple[tuple[str, int], ...] = (
    ("0", 0),
    ("1-99", 1),
    ("100-499", 100),
    ("500-999", 500),
    ("1,000-4,999", 1000),
    ("5,000+", 5000),
)
CHUNK = 20_000


@dataclass
class RuleTotal:
    rule_id: int
    name: str
    code: str
    points: int = 0
    awards: int = 0
    live_points: int = 0
    live_awards: int = 0
    in_set: bool = True  # False: a live rule that is not in the replayed set

    @property
    def difference(self) -> int:
        return self.points - self.live_points


@dataclass
class DayTotal:
    day: dt.date
    points: int = 0
    live_points: int = 0


@dataclass
class Replay:
    """What a rule set would have given over a period, beside what the live rules gave."""

    program: Program
    since: dt.datetime
    until: dt.datetime
    activities: int = 0
    points: int = 0
    live_points: int = 0
    reversed: int = 0  # what the period's refunds would take back of `points`
    live_reversed: int = 0
    rules: list[RuleTotal] = field(default_factory=list)
    days: list[DayTotal] = field(default_factory=list)
    members: int = 0  # members with an activity in the period
    members_earning: int = 0
    members_affected: int = 0  # members whose points differ from the live rules'
    buckets: list[tuple[str, int, int]] = field(default_factory=list)  # (label, members, live members)
    tier_changes: list[tuple[str, str, int]] = field(default_factory=list)  # (live tier, simulated, members)
    tier_note: str = ""
    awards: dict[int, dict[int, int]] | None = None  # activity id -> {rule id: points}, on request

    @property
    def net(self) -> int:
        return self.points - self.reversed

    @property
    def live_net(self) -> int:
        return self.live_points - self.live_reversed

    @property
    def liability_difference(self) -> int:
        """Points outstanding (earned less reversed) above the live rules' (negative: fewer)."""
        return self.net - self.live_net

    def money(self, points: int) -> Decimal:
        return (Decimal(points) * self.program.point_value).quantize(Decimal("0.01"))

    def as_dict(self) -> dict[str, Any]:
        currency = self.program.currency
        return {
            "program": self.program.slug,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "activities": self.activities,
            "points": self.points,
            "live_points": self.live_points,
            "difference": self.points - self.live_points,
            "reversed": self.reversed,
            "live_reversed": self.live_reversed,
            "liability_difference": self.liability_difference,
            "currency": currency,
            "point_value": str(self.program.point_value),
            "value": str(self.money(self.points)),
            "live_value": str(self.money(self.live_points)),
            "liability_difference_value": str(self.money(self.liability_difference)),
            "members": self.members,
            "members_earning": self.members_earning,
            "members_affected": self.members_affected,
            "rules": [
                {
                    "rule_id": r.rule_id,
                    "code": r.code,
                    "name": r.name,
                    "in_set": r.in_set,
                    "points": r.points,
                    "awards": r.awards,
                    "live_points": r.live_points,
                    "live_awards": r.live_awards,
                    "difference": r.difference,
                }
                for r in self.rules
            ],
            "days": [{"day": d.day.isoformat(), "points": d.points, "live_points": d.live_points} for d in self.days],
            "distribution": [{"points": b, "members": n, "live_members": live} for b, n, live in self.buckets],
            "tier_changes": [{"live_tier": a, "simulated_tier": b, "members": n} for a, b, n in self.tier_changes],
            "tier_note": self.tier_note,
        }

    def csv(self) -> str:
        """One table: section, key, simulated, live, difference (points; "value" rows in money)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["section", "key", "simulated", "live", "difference"])
        writer.writerow(["total", "points", self.points, self.live_points, self.points - self.live_points])
        writer.writerow(["total", "reversed", self.reversed, self.live_reversed, self.reversed - self.live_reversed])
        writer.writerow(["total", "outstanding", self.net, self.live_net, self.liability_difference])
        money = [self.money(self.points), self.money(self.live_points)]
        writer.writerow(["total", f"value {self.program.currency}", *money, money[0] - money[1]])
        writer.writerow(["total", "members earning", self.members_earning, "", ""])
        writer.writerow(["total", "members affected", self.members_affected, "", ""])
        for r in self.rules:
            writer.writerow(["rule", r.name, r.points, r.live_points, r.difference])
        for d in self.days:
            writer.writerow(["day", d.day.isoformat(), d.points, d.live_points, d.points - d.live_points])
        for label, n, live in self.buckets:
            writer.writerow(["members by points", label, n, live, n - live])
        for a, b, n in self.tier_changes:
            writer.writerow(["tier change", f"{a} -> {b}", n, "", ""])
        return out.getvalue()

    def text(self) -> str:
        cur = self.program.currency
        lines = [
            f"Replay of {self.program.slug}: activities from {self.since:%Y-%m-%d %H:%M} to {self.until:%Y-%m-%d %H:%M}"
            f" ({self.activities} activities)",
            f"Points: {self.points} (live rules: {self.live_points}, difference {self.points - self.live_points:+d})",
            f"Value: {self.money(self.points)} {cur} (live: {self.money(self.live_points)} {cur})",
            f"Refunds take back: {self.reversed} (live: {self.live_reversed})",
            f"Liability difference: {self.liability_difference:+d} points "
            f"({self.money(self.liability_difference)} {cur})",
            f"Members: {self.members} active, {self.members_earning} earning, {self.members_affected} affected",
            "",
            "Per rule:                                   simulated       live   difference",
        ]
        for r in self.rules:
            name = r.name if r.in_set else f"{r.name} (not in the set)"
            lines.append(f"  {name[:40]:40} {r.points:>12} {r.live_points:>10} {r.difference:>+12}")
        lines += ["", "Per day:"]
        lines += [f"  {d.day}  {d.points:>12} {d.live_points:>10}" for d in self.days]
        lines += ["", "Members by points in the period (simulated / live):"]
        lines += [f"  {label:12} {n:>8} {live:>8}" for label, n, live in self.buckets]
        lines += ["", "Tier changes: " + (self.tier_note or "")]
        lines += [f"  {a} -> {b}: {n}" for a, b, n in self.tier_changes]
        return "\n".join(lines) + "\n"


def period_of_days(*, program: Program, days: int, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The last `days` calendar days in the program's time zone, today included: from local
    midnight `days - 1` days ago to the end of today."""
    today = program.local_date(now)
    return program.start_of_day(today - dt.timedelta(days=days - 1)), program.start_of_day(today + dt.timedelta(days=1))


def period_of_dates(*, program: Program, since: dt.date, until: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """From local midnight of `since` to the end of the day `until` (both included)."""
    return program.start_of_day(since), program.start_of_day(until + dt.timedelta(days=1))


def prepare_rules(*, program: Program, rules_: Iterable[EarningRule] | None) -> list[EarningRule]:
    """The rule set to replay, as copies (the callers' objects are never changed or saved)
    with `tier_ids` set and an id each: a saved rule keeps its own; an unsaved rule takes the
    id of the live rule with its code (so it is compared with that rule and its caps count
    what that rule gave before the period), else a negative id of its own. None: the live
    rules."""
    if rules_ is None:
        return selectors.live_rules(program=program)
    given = selectors.rules_with_tiers(copy.copy(r) for r in rules_)
    live_ids = dict(EarningRule.objects.filter(program=program).values_list("code", "id"))
    taken = {r.pk for r in given if r.pk}
    prepared = []
    for number, rule in enumerate(given, start=1):
        if not rule.pk:
            borrowed = live_ids.get(rule.code) if rule.code else None
            rule.id = borrowed if borrowed and borrowed not in taken else -number
            taken.add(rule.id)
        prepared.append(rule)
    return prepared


class _Caps:
    """The awards of capped rules per member: per local day, ISO week, month and in all, so
    the usage of an activity is four dictionary reads (what `selectors.rule_usage` sums)."""

    def __init__(self) -> None:
        self.day: dict[tuple[int, int, dt.date], int] = defaultdict(int)
        self.week: dict[tuple[int, int, dt.date], int] = defaultdict(int)
        self.month: dict[tuple[int, int, dt.date], int] = defaultdict(int)
        self.lifetime: dict[tuple[int, int], int] = defaultdict(int)

    @staticmethod
    def keys(day: dt.date) -> tuple[dt.date, dt.date, dt.date]:
        return day, day - dt.timedelta(days=day.weekday()), day.replace(day=1)

    def add(self, member_id: int, rule_id: int, day: dt.date, points: int) -> None:
        d, w, m = self.keys(day)
        self.day[member_id, rule_id, d] += points
        self.week[member_id, rule_id, w] += points
        self.month[member_id, rule_id, m] += points
        self.lifetime[member_id, rule_id] += points

    def usage(self, member_id: int, rule_id: int, day: dt.date) -> rules.Usage:
        d, w, m = self.keys(day)
        return rules.Usage(
            day=self.day.get((member_id, rule_id, d), 0),
            week=self.week.get((member_id, rule_id, w), 0),
            month=self.month.get((member_id, rule_id, m), 0),
            lifetime=self.lifetime.get((member_id, rule_id), 0),
        )


def _capped(rule: EarningRule) -> bool:
    return any(x is not None for x in (rule.cap_per_day, rule.cap_per_week, rule.cap_per_month, rule.cap_lifetime))


def _seed_caps(caps: _Caps, *, program: Program, rule_ids: list[int], since: dt.datetime) -> None:
    """What the live rules gave before the period, for the caps: in all, and per local day from
    the start of the week or month that holds `since`. 2 statements (over `award_member_rule_time`)."""
    if not rule_ids:
        return
    first_day = program.local_date(since)
    seed_from = program.start_of_day(min(first_day - dt.timedelta(days=first_day.weekday()), first_day.replace(day=1)))
    table = RuleAward._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT member_id, rule_id, sum(points)::bigint FROM {table} "
            "WHERE rule_id = ANY(%s) AND occurred_at < %s GROUP BY 1, 2",
            [rule_ids, seed_from],
        )
        for member_id, rule_id, points in cursor.fetchall():
            caps.lifetime[member_id, rule_id] += points
        cursor.execute(
            f"SELECT member_id, rule_id, (occurred_at AT TIME ZONE %s)::date, sum(points)::bigint FROM {table} "
            "WHERE rule_id = ANY(%s) AND occurred_at >= %s AND occurred_at < %s GROUP BY 1, 2, 3",
            [program.timezone, rule_ids, seed_from, since],
        )
        for member_id, rule_id, day, points in cursor.fetchall():
            caps.add(member_id, rule_id, day, points)


class _TierHistory:
    """Each member's tier over time (the rule of `selectors.member_tier_at`), read in 2 statements."""

    def __init__(self, program: Program) -> None:
        self.moments: dict[int, list[dt.datetime]] = {}
        self.tiers: dict[int, list[tuple[int | None, Decimal]]] = {}
        self.current: dict[int, tuple[int | None, Decimal]] = {}
        if not apps.is_installed("tiers"):
            return
        from tiers.models import MemberTier, Tier, TierChange  # an optional app, a layer below workflows

        change, state, tier = TierChange._meta.db_table, MemberTier._meta.db_table, Tier._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT c.member_id, c.at, c.to_tier_id, t.multiplier FROM {change} c "
                f"JOIN loyalty_member m ON m.id = c.member_id LEFT JOIN {tier} t ON t.id = c.to_tier_id "
                "WHERE m.program_id = %s ORDER BY c.member_id, c.at, c.id",
                [program.pk],
            )
            for member_id, at, tier_id, multiplier in cursor.fetchall():
                self.moments.setdefault(member_id, []).append(at)
                self.tiers.setdefault(member_id, []).append(
                    (tier_id, Decimal(multiplier)) if tier_id is not None else (None, Decimal(1))
                )
            cursor.execute(
                f"SELECT s.member_id, s.tier_id, t.multiplier FROM {state} s JOIN {tier} t ON t.id = s.tier_id "
                "JOIN loyalty_member m ON m.id = s.member_id WHERE m.program_id = %s",
                [program.pk],
            )
            for member_id, tier_id, multiplier in cursor.fetchall():
                self.current[member_id] = (tier_id, Decimal(multiplier))

    def at(self, member_id: int, moment: dt.datetime) -> tuple[int | None, Decimal]:
        moments = self.moments.get(member_id)
        if moments is None:
            return self.current.get(member_id, (None, Decimal(1)))
        index = bisect.bisect_left(moments, moment) - 1
        return self.tiers[member_id][index] if index >= 0 else (None, Decimal(1))


# The period's activities that went through the rules, in the order they were reported, with
# what they earned then (their earn entries), when (the posting's time: the tier is the one
# before it), and for a purchase its refunds up to the end of the period and what they took
# back. Refunds are not replayed (they earn nothing; the reversal follows the points), nor
# referral payouts (recorded with data.role; the referral settings pay them, not the rules).
_ACTIVITIES_SQL = """
WITH earned AS (
    SELECT activity_id, sum(points)::bigint AS points, min(created_at) AS posted_at
    FROM loyalty_ledgerentry
    WHERE program_id = %(program)s AND kind = 'earn' AND activity_id IS NOT NULL
      AND occurred_at >= %(since)s AND occurred_at < %(until)s
    GROUP BY activity_id
), refunds AS (
    SELECT order_id, sum(amount) AS refunded FROM loyalty_activity
    WHERE program_id = %(program)s AND type = 'refund' AND order_id <> '' AND occurred_at < %(until)s
    GROUP BY order_id
), reversals AS (
    SELECT a.order_id, -sum(e.points)::bigint AS points
    FROM loyalty_ledgerentry e JOIN loyalty_activity a ON a.id = e.activity_id
    WHERE e.program_id = %(program)s AND e.kind = 'reversal' AND a.type = 'refund' AND a.order_id <> ''
      AND a.occurred_at < %(until)s
    GROUP BY a.order_id
)
SELECT a.id, a.member_id, a.type, a.occurred_at, (a.occurred_at AT TIME ZONE %(tz)s)::date,
       a.amount, a.channel, a.items, coalesce(e.points, 0), {moment},
       f.refunded, coalesce(v.points, 0)
FROM loyalty_activity a
LEFT JOIN earned e ON e.activity_id = a.id
LEFT JOIN refunds f ON a.type = 'purchase' AND a.order_id <> '' AND f.order_id = a.order_id
LEFT JOIN reversals v ON a.type = 'purchase' AND a.order_id <> '' AND v.order_id = a.order_id
WHERE a.program_id = %(program)s AND a.occurred_at >= %(since)s AND a.occurred_at < %(until)s
  AND a.type <> 'refund' AND NOT (a.type = 'referral' AND a.data ? 'role')
ORDER BY a.id
"""

_LIVE_RULES_SQL = f"""
SELECT ra.rule_id, r.name, r.code, sum(ra.points)::bigint, count(*)
FROM {RuleAward._meta.db_table} ra JOIN {EarningRule._meta.db_table} r ON r.id = ra.rule_id
WHERE r.program_id = %s AND ra.occurred_at >= %s AND ra.occurred_at < %s
GROUP BY ra.rule_id, r.name, r.code
"""


def _items(raw: Any) -> tuple[rules.Item, ...]:
    """An activity's items column as read by a raw cursor (Django leaves jsonb as text)."""
    if not raw or raw == "[]":
        return ()
    return rules.parse_items(json.loads(raw) if isinstance(raw, str) else raw)


def _reversal(points: int, amount: Decimal | None, refunded: Decimal | None) -> int:
    """What the refunds of an order take back of `points` (`points_reverse_order`'s share)."""
    if refunded is None or points <= 0:
        return 0
    share = refunded / amount if amount else Decimal(1)
    return min(points, int((Decimal(points) * share).to_integral_value(rounding=ROUND_FLOOR)))


def replay(
    *,
    program: Program,
    since: dt.datetime,
    until: dt.datetime,
    rules_: Sequence[EarningRule] | None = None,
    keep_awards: bool = False,
    chunk_size: int = CHUNK,
) -> Replay:
    """The activities that occurred in [since, until) replayed against `rules_` (default: the
    live rules; else EarningRule instances, saved or not, e.g. a draft or a program file's
    rules), beside what the live rules gave. Writes nothing: the reads run in a read-only
    transaction when none is open. `keep_awards`: also every activity's awards (tests).
    Statements: about 6, whatever the number of activities (one cursor read in chunks)."""
    prepared = prepare_rules(program=program, rules_=rules_)
    result = Replay(program=program, since=since, until=until, awards={} if keep_awards else None)
    by_trigger: dict[str, list[EarningRule]] = defaultdict(list)
    for rule in prepared:
        if rule.is_active:
            by_trigger[rule.trigger].append(rule)
    for group in by_trigger.values():
        group.sort(key=lambda r: (-r.priority, r.id or 0))
    capped = {r.id for r in prepared if _capped(r)}
    needs_tiers = any(getattr(r, "tier_ids", None) for r in prepared) or (
        apps.is_installed("tiers") and _tiers_multiply(program)
    )
    totals = {r.id: RuleTotal(rule_id=r.id, name=r.name, code=r.code) for r in prepared}
    days: dict[dt.date, DayTotal] = {}
    # member -> [points, live points, points in the tier window, live points in the tier window]
    per_member: dict[int, list[int]] = {}
    window = _tier_window_start(program, until)
    read_only = not connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            if read_only:
                cursor.execute("SET TRANSACTION READ ONLY")
            # The period's activities are sorted by id with their earn sums joined: room for that
            # sort in memory rather than on disk (this transaction only).
            cursor.execute("SET LOCAL work_mem = '64MB'")
        caps = _Caps()
        _seed_caps(caps, program=program, rule_ids=[i for i in capped if i > 0], since=since)
        history = _TierHistory(program) if needs_tiers else None
        with connection.cursor() as cursor:
            cursor.execute(_LIVE_RULES_SQL, [program.pk, since, until])
            for rule_id, name, code, points, count in cursor.fetchall():
                total = totals.get(rule_id) or totals.setdefault(
                    rule_id, RuleTotal(rule_id=rule_id, name=name, code=code, in_set=False)
                )
                total.live_points, total.live_awards = points, count
        params = {"program": program.pk, "since": since, "until": until, "tz": program.timezone}
        earn_rate = program.earn_rate
        no_tier = (None, Decimal(1))
        with connection.chunked_cursor() as cursor:
            # The posting time dates the member's tier; not read (a timestamp less to parse per row) without tiers.
            moment_sql = "coalesce(e.posted_at, a.reported_at)" if history is not None else "NULL::timestamptz"
            cursor.execute(_ACTIVITIES_SQL.replace("{moment}", moment_sql), params)
            while rows := cursor.fetchmany(chunk_size):
                for (
                    activity_id,
                    member_id,
                    type_,
                    occurred_at,
                    day,
                    amount,
                    channel,
                    items,
                    live,
                    moment,
                    refunded,
                    live_reversed,
                ) in rows:
                    candidates = by_trigger.get(type_)
                    points = 0
                    if candidates:
                        facts = rules.ActivityFacts(
                            type=type_,
                            occurred_at=occurred_at,
                            weekday=day.weekday(),
                            amount=amount,
                            channel=channel,
                            items=_items(items),
                        )
                        usage = {r.id: caps.usage(member_id, r.id, day) for r in candidates if r.id in capped}
                        tier_id, multiplier = history.at(member_id, moment) if history is not None else no_tier
                        awards = rules.evaluate(
                            candidates,
                            facts,
                            usage=usage,
                            earn_rate=earn_rate,
                            tier_multiplier=multiplier,
                            tier_id=tier_id,
                        )
                        for award in awards:
                            rule_id = award.rule.id
                            points += award.points
                            total = totals[rule_id]
                            total.points += award.points
                            total.awards += 1
                            if rule_id in capped:
                                caps.add(member_id, rule_id, day, award.points)
                        if result.awards is not None:
                            result.awards[activity_id] = {a.rule.id: a.points for a in awards}
                    elif result.awards is not None:
                        result.awards[activity_id] = {}
                    result.activities += 1
                    result.points += points
                    result.live_points += live
                    sim_back = _reversal(points, amount, refunded)
                    result.reversed += sim_back
                    result.live_reversed += live_reversed
                    day_total = days.get(day)
                    if day_total is None:
                        day_total = days[day] = DayTotal(day=day)
                    day_total.points += points
                    day_total.live_points += live
                    member = per_member.get(member_id)
                    if member is None:
                        member = per_member[member_id] = [0, 0, 0, 0]
                    member[0] += points - sim_back
                    member[1] += live - live_reversed
                    if window is None or occurred_at >= window:
                        member[2] += points - sim_back
                        member[3] += live - live_reversed
        _tier_changes(result, program=program, per_member=per_member, until=until)
    result.rules = sorted(totals.values(), key=lambda t: (not t.in_set, -t.points, t.name))
    result.days = [days[d] for d in sorted(days)]
    result.members = len(per_member)
    result.members_earning = sum(1 for m in per_member.values() if m[0] > 0)
    result.members_affected = sum(1 for m in per_member.values() if m[0] != m[1])
    result.buckets = _buckets(per_member)
    return result


def _tiers_multiply(program: Program) -> bool:
    from tiers.models import Tier  # an optional app, a layer below workflows

    return Tier.objects.filter(program=program).exclude(multiplier=1).exists()


def _tier_window_start(program: Program, until: dt.datetime) -> dt.datetime | None:
    if not apps.is_installed("tiers"):
        return None
    from tiers.selectors import window_start  # an optional app, a layer below workflows

    return window_start(program=program, now=until)


def _buckets(per_member: dict[int, list[int]]) -> list[tuple[str, int, int]]:
    lows = [low for _, low in BUCKETS]
    counts = [0] * len(BUCKETS)
    live_counts = [0] * len(BUCKETS)
    for net, live_net, *_ in per_member.values():
        counts[max(0, bisect.bisect_right(lows, net) - 1)] += 1
        live_counts[max(0, bisect.bisect_right(lows, live_net) - 1)] += 1
    return [(label, counts[i], live_counts[i]) for i, (label, _) in enumerate(BUCKETS)]


def _tier_changes(result: Replay, *, program: Program, per_member: dict[int, list[int]], until: dt.datetime) -> None:
    """Tier changes the rule set would cause, estimated: for the members whose points in the
    tier window differ, the tier their metric qualifies for at the end of the period, with the
    live points and with the simulated ones (retention, manual tiers and the timing of
    upgrades left out). Only the "points earned" metric depends on the rules."""
    if not apps.is_installed("tiers"):
        result.tier_note = "the tiers app is not installed."
        return
    from tiers.selectors import METRIC_SQL, active_tiers, qualifying_tier, window_start

    if program.tier_metric != Program.TierMetric.POINTS_EARNED:
        result.tier_note = f"none: the tier metric ({program.get_tier_metric_display()}) does not depend on points."
        return
    if not active_tiers(program=program):
        result.tier_note = "none: the program has no active tiers."
        return
    changed = {m: v[2] - v[3] for m, v in per_member.items() if v[2] != v[3]}
    result.tier_note = (
        "estimated from the tier thresholds at the end of the period: each affected member's points earned "
        "in the tier window, with the live points and with the simulated ones (retention and manual tiers "
        "left out)."
    )
    if not changed:
        return
    metric: dict[int, Decimal] = {}
    ids = sorted(changed)
    start = window_start(program=program, now=until)
    with connection.cursor() as cursor:
        for lo in range(0, len(ids), 50_000):
            part = ids[lo : lo + 50_000]
            cursor.execute(
                METRIC_SQL[Program.TierMetric.POINTS_EARNED],
                {"lo": part[0], "hi": part[-1] + 1, "program": program.pk, "start": start, "now": until},
            )
            metric.update((m, Decimal(v)) for m, v in cursor.fetchall() if m in changed)
    moves: dict[tuple[str, str], int] = defaultdict(int)
    for member_id, diff in changed.items():
        live_value = metric.get(member_id, Decimal(0))
        before = qualifying_tier(program=program, value=live_value)
        after = qualifying_tier(program=program, value=live_value + diff)
        if before != after:
            moves[(before.name if before else "no tier", after.name if after else "no tier")] += 1
    result.tier_changes = sorted(((a, b, n) for (a, b), n in moves.items()), key=lambda x: -x[2])


def as_json(result: Replay) -> str:
    return json.dumps(result.as_dict(), indent=2)
