"""Reads of the workflows app: the rules an activity meets, what they already gave (caps), the
tier multiplier, and the preview of an activity (posting nothing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import Prefetch, Sum
from django.utils import timezone

from loyalty.models import Activity, LedgerEntry, Member, Program
from loyalty.presence import TtlCache
from tiers.models import Tier

from . import budgets as budget_gates
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
    before_activity_id: int | None = None,
) -> dict[int, rules.Usage]:
    """Points each capped rule already gave the member in the day, week and month of
    `occurred_at` and in all; and, for daily caps, for activities reported on the day of
    `reported_at` (default `occurred_at`), whenever they occurred (docs/fraud.md, backdating).
    `before_activity_id`: only awards of activities reported before that one (what the caps
    saw when it was reported). Queries: 1 (none when no rule has a period cap), on the
    `award_member_rule_time` index (joined to the awards' activities only when a rule has a
    daily cap)."""
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
    params: dict[str, Any] = {"member": member_id, "rules": capped, "before": before_activity_id}
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
            "WHERE a.member_id = %(member)s AND a.rule_id = ANY(%(rules)s) "
            "AND (%(before)s::bigint IS NULL OR a.activity_id < %(before)s::bigint) GROUP BY a.rule_id",
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
    budgets: rules.Budgets | None = None,
    reported_at: dt.datetime | None = None,
) -> list[rules.Award]:
    """What the program's rules give the member for an activity with these facts, reported at
    `reported_at` (default: when it occurred). `tier`: the member's (tier id, multiplier) when
    the caller read it already; `budgets`: what the budgets have left (workflows.budgets;
    None: no budget applies). Queries: the rules (kept 5 s per process) + 1 (caps, if any) + 1
    (the member's tier, unless given)."""
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
        candidates,
        facts,
        usage=usage,
        earn_rate=program.earn_rate,
        tier_multiplier=multiplier,
        tier_id=tier_id,
        budgets=budgets,
    )


@dataclass(frozen=True)
class Preview:
    points: int
    awards: list[rules.Award]
    # Why a budget cut or stopped a rule ("Budget of rule ... used up ..."), in words.
    budget_notes: list[str] = field(default_factory=list)


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
    """What this activity would earn the member now (caps, tier and budgets included, the
    budgets' use as of now); writes nothing."""
    now = timezone.now()
    facts = activity_facts(
        program=program,
        type=type,
        occurred_at=occurred_at or now,
        amount=amount,
        channel=channel,
        items=items,
    )
    owners = budget_gates.activity_owners(
        program=program, candidates=active_rules(program=program, trigger=type), facts=facts
    )
    gate = budget_gates.gate_read(program=program, owners=owners, now=now)
    awards = awards_for(program=program, member_id=member.pk, facts=facts, budgets=gate, reported_at=now)
    notes = gate.reasons if gate is not None else []
    return Preview(points=sum(a.points for a in awards), awards=awards, budget_notes=notes)


def rules_with_tiers(rules_: Iterable[EarningRule]) -> list[EarningRule]:
    """`rules_` with `tier_ids` set where missing (a saved rule: its tier condition; an unsaved
    one: any tier). Queries: 1 when a saved rule lacks them."""
    rules_ = list(rules_)
    missing = [r.pk for r in rules_ if r.pk and not hasattr(r, "tier_ids")]
    if missing:
        through = EarningRule.tiers.through
        by_rule: dict[int, set[int]] = {}
        for rule_id, tier_id in through.objects.filter(earningrule_id__in=missing).values_list(
            "earningrule_id", "tier_id"
        ):
            by_rule.setdefault(rule_id, set()).add(tier_id)
        for rule in rules_:
            if rule.pk in by_rule or (rule.pk and not hasattr(rule, "tier_ids")):
                rule.tier_ids = frozenset(by_rule.get(rule.pk, ()))
    return rules_


def live_rules(*, program: Program) -> list[EarningRule]:
    """Every active rule of the program (all triggers), with `tier_ids`. Queries: 2."""
    found = list(
        EarningRule.objects.filter(program=program, is_active=True)
        .prefetch_related(Prefetch("tiers", queryset=Tier.objects.only("id")))
        .order_by("-priority", "id")
    )
    for rule in found:
        rule.tier_ids = frozenset(t.id for t in rule.tiers.all())
    return found


def member_tier_at(*, member_id: int, moment: dt.datetime) -> tuple[int | None, Decimal]:
    """The member's tier (id, earn multiplier) just before `moment`, from the tier history:
    the tier the latest change strictly before `moment` moved to; a member with no history at
    all has the current tier (set without history: imports, demo data). The multiplier is
    the tier's today (history keeps no multiplier). Queries: 1-2."""
    if not apps.is_installed("tiers"):
        return None, Decimal(1)
    from tiers.models import TierChange  # an optional app, a layer below workflows

    changes = TierChange.objects.filter(member_id=member_id)
    last = changes.filter(at__lt=moment).order_by("-at", "-id").values_list("to_tier_id", "to_tier__multiplier")
    row = next(iter(last), None)
    if row is not None:
        return (row[0], Decimal(row[1])) if row[0] is not None else (None, Decimal(1))
    if changes.exists():
        return None, Decimal(1)
    return member_tier(member_id=member_id)


def activity_moment(*, activity: Activity) -> dt.datetime:
    """When the rules ran for a stored activity: its earn entries' posting time (the `now` of
    `activity_report`), else when the row was written."""
    posted = (
        LedgerEntry.objects.filter(activity_id=activity.pk, kind=LedgerEntry.Kind.EARN)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return posted or activity.reported_at


@dataclass(frozen=True)
class Explained:
    """`explanation` of an activity, with what its facts were and the tier it was computed with."""

    facts: rules.ActivityFacts
    explanation: rules.Explanation
    tier_id: int | None
    tier_multiplier: Decimal
    live_points: int | None = None  # a stored activity: what it earned then (its rule awards)
    # A stored activity whose points were posted without rule awards (an import, the demo's
    # history): `live_points` are its earn entries', which the rules did not compute.
    without_awards: bool = False


def activity_explain(
    *,
    program: Program,
    member: Member,
    type: str,
    occurred_at: dt.datetime | None = None,
    amount: Decimal | None = None,
    channel: str = "",
    items: Iterable[Mapping[str, Any]] = (),
    rules_: Sequence[EarningRule] | None = None,
) -> Explained:
    """Each rule's step for an activity typed in (as `activity_preview`: the member's caps and
    tier now). `rules_`: another rule set (a draft; unsaved rules have no caps used yet);
    default the live rules for the activity's type. Writes nothing."""
    facts = activity_facts(
        program=program,
        type=type,
        occurred_at=occurred_at or timezone.now(),
        amount=amount,
        channel=channel,
        items=items,
    )
    candidates = rules_with_tiers(rules_) if rules_ is not None else active_rules(program=program, trigger=type)
    usage = rule_usage(
        program=program,
        member_id=member.pk,
        rules_=candidates,
        occurred_at=facts.occurred_at,
        reported_at=timezone.now(),
    )
    tier_id, multiplier = member_tier(member_id=member.pk)
    explanation = rules.explain(
        candidates, facts, usage=usage, earn_rate=program.earn_rate, tier_multiplier=multiplier, tier_id=tier_id
    )
    return Explained(facts=facts, explanation=explanation, tier_id=tier_id, tier_multiplier=multiplier)


def stored_activity_explain(*, activity: Activity, rules_: Sequence[EarningRule] | None = None) -> Explained:
    """Each rule's step for a stored activity, as things stood when it was reported: the
    caps counted over the awards of activities reported before it, the member's tier from
    the tier history (`member_tier_at`). `rules_`: another rule set; default the program's
    active rules today (a rule changed since explains what it would do now). Writes nothing."""
    program = activity.program
    facts = activity_facts(
        program=program,
        type=activity.type,
        occurred_at=activity.occurred_at,
        amount=activity.amount,
        channel=activity.channel,
        items=activity.items or (),
    )
    candidates = (
        rules_with_tiers(rules_) if rules_ is not None else active_rules(program=program, trigger=activity.type)
    )
    usage = rule_usage(
        program=program,
        member_id=activity.member_id,
        rules_=candidates,
        occurred_at=activity.occurred_at,
        reported_at=activity.reported_at,
        before_activity_id=activity.pk,
    )
    tier_id, multiplier = member_tier_at(member_id=activity.member_id, moment=activity_moment(activity=activity))
    explanation = rules.explain(
        candidates, facts, usage=usage, earn_rate=program.earn_rate, tier_multiplier=multiplier, tier_id=tier_id
    )
    live = RuleAward.objects.filter(activity_id=activity.pk).aggregate(total=Sum("points"))["total"]
    without_awards = False
    if live is None:
        posted = LedgerEntry.objects.filter(activity_id=activity.pk, kind=LedgerEntry.Kind.EARN).aggregate(
            total=Sum("points")
        )["total"]
        without_awards, live = posted is not None, posted
    return Explained(
        facts=facts,
        explanation=explanation,
        tier_id=tier_id,
        tier_multiplier=multiplier,
        live_points=live or 0,
        without_awards=without_awards,
    )
