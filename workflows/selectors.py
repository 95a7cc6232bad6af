"""Reads of the workflows app: the rules an activity meets, what they already gave (caps), the
tier multiplier, and the preview of an activity (posting nothing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import Prefetch
from django.utils import timezone

from loyalty.models import Activity, Member, Program
from loyalty.presence import TtlCache
from tiers.models import Tier

from . import rules
from .models import EarningRule, RuleAward


def member_tier(*, member_id: int) -> tuple[int | None, Decimal]:
    """The member's tier id (None without one) and its earn multiplier (1 without a tier).
    Queries: 1 (none while the `tiers` app is not installed)."""
    if not apps.is_installed("tiers"):
        return None, Decimal(1)
    from tiers.models import MemberTier  # an optional app, a layer below workflows

    row = MemberTier.objects.filter(member_id=member_id, tier__isnull=False).values_list("tier_id", "tier__multiplier")
    tier_id, multiplier = next(iter(row), (None, Decimal(1)))
    return tier_id, Decimal(multiplier)


def tier_multiplier(*, member_id: int) -> Decimal:
    """The member's tier earn multiplier, 1 without a tier."""
    return member_tier(member_id=member_id)[1]


# The active rules per (program, trigger), kept 5 s per process and forgotten when a rule or
# its tiers change in this process (workflows.receivers): every activity reads them.
_active_rules = TtlCache[tuple[EarningRule, ...]](ttl=5.0)


def active_rules_forget() -> None:
    _active_rules.clear()


def active_rules(*, program: Program, trigger: str) -> list[EarningRule]:
    """The active rules of `program` for activities of type `trigger`, highest priority first,
    each with `tier_ids` (the tiers its tier condition allows; empty = any). Queries: none
    most of the time (kept 5 s per process; another process sees a rule change within 5 s),
    else 1 (the partial index `rule_active_trigger`) + 1 for the tier conditions."""

    def load() -> tuple[EarningRule, ...]:
        found = list(
            EarningRule.objects.filter(program=program, trigger=trigger, is_active=True)
            .prefetch_related(Prefetch("tiers", queryset=Tier.objects.only("id")))
            .order_by("-priority", "id")
        )
        for rule in found:
            rule.tier_ids = frozenset(t.id for t in rule.tiers.all())
        return tuple(found)

    return list(_active_rules.get((program.pk, trigger), load))


def _periods(program: Program, moment: dt.datetime) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Day, ISO week and month around `moment`, in the program's time zone."""
    day = program.local_date(moment)
    week = day - dt.timedelta(days=day.weekday())
    month = day.replace(day=1)
    next_month = (month + dt.timedelta(days=32)).replace(day=1)
    return {
        "day": (program.start_of_day(day), program.start_of_day(day + dt.timedelta(days=1))),
        "week": (program.start_of_day(week), program.start_of_day(week + dt.timedelta(days=7))),
        "month": (program.start_of_day(month), program.start_of_day(next_month)),
    }


def rule_usage(
    *,
    program: Program,
    member_id: int,
    rules_: Sequence[EarningRule],
    occurred_at: dt.datetime,
    reported_at: dt.datetime | None = None,
) -> dict[int, rules.Usage]:
    """Points each capped rule already gave the member in the day, week and month of
    `occurred_at` and in all; and, for daily caps, for activities reported on the day of
    `reported_at` (default `occurred_at`), whenever they occurred (docs/fraud.md, backdating).
    Queries: 1 (none when no rule has a period cap), on the `award_member_rule_time` index
    (joined to the awards' activities only when a rule has a daily cap)."""
    capped = [r.id for r in rules_ if any((r.cap_per_day, r.cap_per_week, r.cap_per_month, r.cap_lifetime)) and r.id]
    if not capped:
        return {}
    periods = _periods(program, occurred_at)
    # Raw SQL: the ORM's filtered aggregates cost more CPU to build than the statement to run.
    sums = ", ".join(
        f"coalesce(sum(a.points) FILTER (WHERE a.occurred_at >= %({name}_start)s "
        f"AND a.occurred_at < %({name}_end)s), 0)::bigint"
        for name in periods
    )
    params: dict[str, Any] = {"member": member_id, "rules": capped}
    for name, (start, end) in periods.items():
        params[f"{name}_start"], params[f"{name}_end"] = start, end
    join, reported = "", "0::bigint"
    if any(r.cap_per_day for r in rules_):
        params["r_start"], params["r_end"] = _periods(program, reported_at or occurred_at)["day"]
        join = (
            f"LEFT JOIN {Activity._meta.db_table} act ON act.id = a.activity_id "
            "AND act.reported_at >= %(r_start)s AND act.reported_at < %(r_end)s"
        )
        reported = "coalesce(sum(a.points) FILTER (WHERE act.id IS NOT NULL), 0)::bigint"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.rule_id, coalesce(sum(a.points), 0)::bigint, {reported}, {sums} "
            f"FROM {RuleAward._meta.db_table} a {join} "
            "WHERE a.member_id = %(member)s AND a.rule_id = ANY(%(rules)s) GROUP BY a.rule_id",
            params,
        )
        rows = cursor.fetchall()
    names = list(periods)
    return {
        rule_id: rules.Usage(lifetime=lifetime, reported_day=reported_day, **dict(zip(names, values, strict=True)))
        for rule_id, lifetime, reported_day, *values in rows
    }


def activity_facts(
    *,
    program: Program,
    type: str,
    occurred_at: dt.datetime,
    amount: Decimal | None = None,
    channel: str = "",
    items: Iterable[Mapping[str, Any]] = (),
) -> rules.ActivityFacts:
    return rules.ActivityFacts(
        type=type,
        occurred_at=occurred_at,
        weekday=program.local_date(occurred_at).weekday(),
        amount=Decimal(amount) if amount is not None else None,
        channel=channel,
        items=rules.parse_items(items),
    )


def awards_for(
    *,
    program: Program,
    member_id: int,
    facts: rules.ActivityFacts,
    tier: tuple[int | None, Decimal] | None = None,
    reported_at: dt.datetime | None = None,
) -> list[rules.Award]:
    """What the program's rules give the member for an activity with these facts, reported at
    `reported_at` (default: when it occurred). `tier`: the member's (tier id, multiplier) when
    the caller read it already. Queries: the rules (kept 5 s per process) + 1 (caps, if any)
    + 1 (the member's tier, unless given)."""
    candidates = active_rules(program=program, trigger=facts.type)
    if not candidates:
        return []
    usage = rule_usage(
        program=program,
        member_id=member_id,
        rules_=candidates,
        occurred_at=facts.occurred_at,
        reported_at=reported_at,
    )
    tier_id, multiplier = tier if tier is not None else member_tier(member_id=member_id)
    if facts.type != "purchase":
        multiplier = Decimal(1)
    return rules.evaluate(
        candidates, facts, usage=usage, earn_rate=program.earn_rate, tier_multiplier=multiplier, tier_id=tier_id
    )


@dataclass(frozen=True)
class Preview:
    points: int
    awards: list[rules.Award]


def activity_preview(
    *,
    program: Program,
    member: Member,
    type: str,
    occurred_at: dt.datetime | None = None,
    amount: Decimal | None = None,
    channel: str = "",
    items: Iterable[Mapping[str, Any]] = (),
) -> Preview:
    """What this activity would earn the member now (caps and tier included); writes nothing."""
    facts = activity_facts(
        program=program,
        type=type,
        occurred_at=occurred_at or timezone.now(),
        amount=amount,
        channel=channel,
        items=items,
    )
    awards = awards_for(program=program, member_id=member.pk, facts=facts, reported_at=timezone.now())
    return Preview(points=sum(a.points for a in awards), awards=awards)
