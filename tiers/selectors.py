"""Reads of the tiers app: the tier metric of a member, the multiplier, progress to the next tier.

The metric is the program's `tier_metric` over its `tier_window`, as of `now`:
- points earned: earn entries plus negative reversals (refunds), dated by `occurred_at`;
- amount spent: purchases' amounts minus refunds' amounts;
- order count: purchase activities.
`METRIC_SQL` is the same computation for a range of member ids (the nightly run).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Case, DecimalField, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce

from loyalty.models import Activity, LedgerEntry, Member, Program
from loyalty.presence import TtlCache

from .models import MemberTier, Tier

ZERO = Decimal("0")
DEFAULT_ROLLING_DAYS = 365


def window_start(*, program: Program, now: dt.datetime) -> dt.datetime | None:
    """Where the metric's window begins (inclusive); None for lifetime. The calendar year
    starts at local midnight of 1 January in the program's time zone."""
    if program.tier_window == Program.TierWindow.ROLLING:
        return now - dt.timedelta(days=program.tier_window_days or DEFAULT_ROLLING_DAYS)
    if program.tier_window == Program.TierWindow.CALENDAR_YEAR:
        return program.start_of_day(dt.date(program.local_date(now).year, 1, 1))
    return None


def _in_window(start: dt.datetime | None, now: dt.datetime) -> Q:
    q = Q(occurred_at__lte=now)
    return q & Q(occurred_at__gte=start) if start is not None else q


def member_metric(*, member: Member, now: dt.datetime) -> Decimal:
    """The member's tier metric over the program's window as of `now`. 1-2 queries."""
    program = member.program
    window = _in_window(window_start(program=program, now=now), now)
    if program.tier_metric == Program.TierMetric.POINTS_EARNED:
        total = (
            LedgerEntry.objects.filter(window, member_id=member.pk)
            .filter(Q(kind=LedgerEntry.Kind.EARN) | Q(kind=LedgerEntry.Kind.REVERSAL, points__lt=0))
            .aggregate(v=Sum("points"))["v"]
        )
        return Decimal(total or 0)
    purchases = Activity.objects.filter(window, member_id=member.pk)
    if program.tier_metric == Program.TierMetric.ORDER_COUNT:
        return Decimal(purchases.filter(type=Activity.Type.PURCHASE).count())
    money = DecimalField(max_digits=16, decimal_places=2)
    total = purchases.filter(type__in=[Activity.Type.PURCHASE, Activity.Type.REFUND]).aggregate(
        v=Coalesce(
            Sum(
                Case(
                    When(type=Activity.Type.REFUND, then=-Coalesce(F("amount"), Value(ZERO), output_field=money)),
                    default=Coalesce(F("amount"), Value(ZERO), output_field=money),
                    output_field=money,
                )
            ),
            Value(ZERO),
            output_field=money,
        )
    )["v"]
    return Decimal(total)


# The metric of every member of `program` with lo <= id < hi: rows (member_id, value).
# Parameters: program, lo, hi, start (NULL = lifetime), now. Cost: a range scan of the
# member-leading indexes (entry_member_recent, activity_member_recent) of the chunk.
METRIC_SQL = {
    Program.TierMetric.POINTS_EARNED: """
        SELECT e.member_id, SUM(e.points)::numeric AS value
        FROM loyalty_ledgerentry e
        WHERE e.member_id >= %(lo)s AND e.member_id < %(hi)s AND e.program_id = %(program)s
          AND (e.kind = 'earn' OR (e.kind = 'reversal' AND e.points < 0))
          AND e.occurred_at <= %(now)s
          AND (%(start)s::timestamptz IS NULL OR e.occurred_at >= %(start)s::timestamptz)
        GROUP BY e.member_id
    """,
    Program.TierMetric.AMOUNT_SPENT: """
        SELECT a.member_id,
               SUM(CASE WHEN a.type = 'refund' THEN -COALESCE(a.amount, 0) ELSE COALESCE(a.amount, 0) END) AS value
        FROM loyalty_activity a
        WHERE a.member_id >= %(lo)s AND a.member_id < %(hi)s AND a.program_id = %(program)s
          AND a.type IN ('purchase', 'refund')
          AND a.occurred_at <= %(now)s
          AND (%(start)s::timestamptz IS NULL OR a.occurred_at >= %(start)s::timestamptz)
        GROUP BY a.member_id
    """,
    Program.TierMetric.ORDER_COUNT: """
        SELECT a.member_id, COUNT(*)::numeric AS value
        FROM loyalty_activity a
        WHERE a.member_id >= %(lo)s AND a.member_id < %(hi)s AND a.program_id = %(program)s
          AND a.type = 'purchase'
          AND a.occurred_at <= %(now)s
          AND (%(start)s::timestamptz IS NULL OR a.occurred_at >= %(start)s::timestamptz)
        GROUP BY a.member_id
    """,
}


def program_tiers(*, program: Program) -> QuerySet[Tier]:
    """The program's active tiers, lowest first."""
    return Tier.objects.filter(program=program, is_active=True).order_by("position")


# The active tiers per program, kept 5 s per process and forgotten when a tier changes in this
# process (tiers.receivers): every purchase checks for an upgrade.
_active_tiers = TtlCache[tuple[Tier, ...]](ttl=5.0)


def active_tiers_forget() -> None:
    _active_tiers.clear()


def active_tiers(*, program: Program) -> tuple[Tier, ...]:
    """The program's active tiers, lowest first (shared, read-only objects). Queries: none
    most of the time, else 1."""
    return _active_tiers.get(program.pk, lambda: tuple(program_tiers(program=program)))


def qualifying_tier(*, program: Program, value: Decimal) -> Tier | None:
    """The highest active tier whose threshold `value` reaches. Queries: those of `active_tiers`."""
    reached = [t for t in active_tiers(program=program) if t.threshold <= value]
    return reached[-1] if reached else None


def member_tier(*, member_id: int) -> MemberTier | None:
    return MemberTier.objects.select_related("tier").filter(member_id=member_id).first()


def member_multiplier(*, member_id: int) -> Decimal:
    """The earn multiplier of the member's current tier; 1 without a tier. 1 query."""
    value = MemberTier.objects.filter(member_id=member_id, tier__isnull=False).values_list(
        "tier__multiplier", flat=True
    )
    return next(iter(value), Decimal("1"))


@dataclass(frozen=True)
class TierProgress:
    tier: Tier | None
    since: dt.datetime | None
    metric: Decimal
    next_tier: Tier | None
    needed: Decimal | None  # what the metric still lacks for `next_tier`
    retain_until: dt.datetime | None = None  # no downgrade before this moment
    manual_until: dt.datetime | None = None  # staff set the tier until this moment


def member_tier_progress(*, member: Member, now: dt.datetime) -> TierProgress:
    """Current tier, the next tier above it and what is still needed. 3-4 queries."""
    state = member_tier(member_id=member.pk)
    current = state.tier if state else None
    metric = member_metric(member=member, now=now)
    above = program_tiers(program=member.program)
    if current is not None:
        above = above.filter(position__gt=current.position)
    next_tier = above.first()
    needed = max(next_tier.threshold - metric, ZERO) if next_tier else None
    return TierProgress(
        tier=current,
        since=state.since if state else None,
        metric=metric,
        next_tier=next_tier,
        needed=needed,
        retain_until=state.retain_until if state else None,
        manual_until=state.manual_until if state else None,
    )
