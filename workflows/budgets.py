"""Budgets (docs/budgets.md): the points an earning rule, an automation or a program may award,
in all and/or per day, week or month (program time zone, by when the award is made).

A budget's use lives in `BudgetUse` counter rows, one per budget and period ("total",
"2026-12-05", "2026-W49", "2026-12"). An award that spends a budget:
1. `gate_lock` makes sure the counter rows of the budgets that may pay exist (one INSERT ...
   ON CONFLICT DO NOTHING, keys sorted) and locks them (one SELECT ... ORDER BY id FOR
   UPDATE), BEFORE the member row is locked: every transaction takes budget rows first, in one
   statement and one order, then member rows, so budgets and the member locks of
   `workflows.services` and `workflows.automations` never wait on each other in a cycle;
2. the rules (`rules.evaluate(..., budgets=gate)`) or the automation take from the gate: an
   award larger than what is left is cut to what is left (never more: the counters are
   locked), then the budget gives nothing, and each cut is a `Note` in words;
3. `gate_spend` adds what was given to the counters, writes the notes as `BudgetCut` rows
   and, when a period's use first reaches 80 % or 100 % of its limit, marks the row and sends
   `budget_threshold_in_transaction` (the notifications app queues the admin's email and the
   `budget.threshold` webhook event in the same transaction): once per budget, period and
   threshold.
The preview reads the same counters without locking (`gate_read`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from loyalty.models import Activity, Program
from loyalty.presence import TtlCache

from . import rules, signals
from .lock_objects import budget_uses_for_update
from .models import Automation, BudgetCut, BudgetPeriod, BudgetScope, BudgetUse, EarningRule, ProgramBudget

TOTAL = "total"
USES = BudgetUse._meta.db_table

Key = tuple[str, int]  # (scope, owner id)


def has_budget(owner: Any) -> bool:
    return owner is not None and (owner.budget_total is not None or owner.budget_per_period is not None)


def period_key(*, period: str, program: Program, now: dt.datetime) -> str:
    """The period `now` falls in, in the program's time zone: "2026-12-05", "2026-W49" (ISO
    week) or "2026-12"."""
    day = program.local_date(now)
    if period == BudgetPeriod.DAY:
        return day.isoformat()
    if period == BudgetPeriod.WEEK:
        iso = day.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    return f"{day.year:04d}-{day.month:02d}"


def period_label(key: str) -> str:
    """A period key in words: "in all", "day 2026-12-05", "week 2026-W49", "month 2026-12"."""
    if key == TOTAL:
        return "in all"
    if "W" in key:
        return f"week {key}"
    return f"day {key}" if key.count("-") == 2 else f"month {key}"


@dataclass(frozen=True)
class Owner:
    """Who a budget belongs to, with its limits (from the rule, automation or program budget)."""

    scope: str
    owner_id: int
    name: str
    total: int | None
    per_period: int | None
    period: str

    @property
    def key(self) -> Key:
        return (self.scope, self.owner_id)

    @property
    def what(self) -> str:
        if self.scope == BudgetScope.PROGRAM:
            return "the program"
        return f'{"rule" if self.scope == BudgetScope.RULE else "automation"} "{self.name}"'

    def limits(self, *, program: Program, now: dt.datetime) -> list[tuple[str, int]]:
        """(period key, limit) of each limit this budget has as of `now`."""
        found = []
        if self.total is not None:
            found.append((TOTAL, self.total))
        if self.per_period is not None:
            found.append((period_key(period=self.period, program=program, now=now), self.per_period))
        return found


def owner_of(obj: EarningRule | Automation | ProgramBudget, *, name: str = "") -> Owner:
    if isinstance(obj, EarningRule):
        scope, owner_id, name = BudgetScope.RULE, obj.pk, obj.name
    elif isinstance(obj, Automation):
        scope, owner_id, name = BudgetScope.AUTOMATION, obj.pk, obj.name
    else:
        scope, owner_id = BudgetScope.PROGRAM, obj.program_id
    return Owner(scope, owner_id, name, obj.budget_total, obj.budget_per_period, obj.budget_period)


@dataclass(eq=False)
class Counter:
    owner: Owner
    period_key: str
    limit: int
    used: int
    row_id: int | None = None
    alerted_80: bool = False
    alerted_100: bool = False
    start: int = 0

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class Note:
    """An award a budget cut: the budget's owner, who was cut (a rule or an automation), the
    points wanted and given, and why in words."""

    budget: Owner
    rule_id: int | None
    automation_id: int | None
    wanted: int
    given: int
    reason: str
    member_id: int | None = None


@dataclass
class BudgetGate:
    """What is left of the budgets that may pay an award (`rules.Budgets`): `take` gives at
    most what every budget concerned has left and records why it gave less. No query."""

    program_id: int
    counters: dict[Key, list[Counter]]
    notes: list[Note] = field(default_factory=list)

    def left(self, key: Key) -> int | None:
        """What the owner's own budget has left (None: no budget)."""
        mine = self.counters.get(key)
        return None if not mine else min(c.left for c in mine)

    def take(self, rule: EarningRule, points: int) -> int:
        return self.take_for((BudgetScope.RULE, rule.pk), points, rule_id=rule.pk)

    def take_for(
        self,
        key: Key,
        points: int,
        *,
        rule_id: int | None = None,
        automation_id: int | None = None,
        member_id: int | None = None,
    ) -> int:
        """Give `points` from the owner's budget and the program's: all of them, or what the
        tightest budget has left; records a note when that is less."""
        if points <= 0:
            return points
        concerned = [*self.counters.get(key, ()), *self.counters.get((BudgetScope.PROGRAM, self.program_id), ())]
        given, binding = points, None
        for counter in concerned:
            if counter.left < given:
                given, binding = counter.left, counter
        if binding is not None:
            self.notes.append(
                Note(
                    budget=binding.owner,
                    rule_id=rule_id,
                    automation_id=automation_id,
                    wanted=points,
                    given=given,
                    reason=_reason(binding, wanted=points, given=given),
                    member_id=member_id,
                )
            )
        for counter in concerned:
            counter.used += given
        return given

    @property
    def reasons(self) -> list[str]:
        return [n.reason for n in self.notes]


def _reason(counter: Counter, *, wanted: int, given: int) -> str:
    label = f"{period_label(counter.period_key)}, {counter.limit} points"
    if given == 0:
        return f"Budget of {counter.owner.what} used up ({label}): no points instead of {wanted}."[:255]
    return f"Budget of {counter.owner.what} reached ({label}): {given} of {wanted} points given."[:255]


# --------------------------------------------------------------------------------------------
# Which budgets an award may spend

# A program's budget (its limits, or None), kept 5 s per process and forgotten when it changes
# in this process (workflows.receivers): every activity asks.
_program_budgets = TtlCache[Owner | None](ttl=5.0)


def program_budgets_forget(*args: object, **kwargs: object) -> None:
    _program_budgets.clear()


def program_owner(program: Program) -> Owner | None:
    """The program's budget, None without one. Queries: none most of the time, else 1."""

    def load() -> Owner | None:
        found = ProgramBudget.objects.filter(program_id=program.pk).first()
        return owner_of(found) if has_budget(found) else None

    return _program_budgets.get(program.pk, load)


def _may_fire(rule: EarningRule, facts: rules.ActivityFacts) -> bool:
    """The rule's conditions hold for the facts, whatever the member's tier (the tier is read
    with the member's lock, after the budgets are locked)."""
    tiers = getattr(rule, "tier_ids", frozenset())
    return rules.conditions_met(rule, facts, tier_id=next(iter(tiers), None))


def activity_owners(*, program: Program, candidates: Sequence[EarningRule], facts: rules.ActivityFacts) -> list[Owner]:
    """The budgets an activity with these facts may spend: those of the candidate rules whose
    conditions hold, and the program's (none when no rule may fire). No query most of the time
    (cached)."""
    program_budget = program_owner(program)
    if program_budget is None and not any(has_budget(r) for r in candidates):
        return []  # the common case: nothing to check
    firing = [r for r in candidates if _may_fire(r, facts)]
    if not firing:
        return []
    owners = [owner_of(r) for r in firing if has_budget(r)]
    return owners + ([program_budget] if program_budget is not None else [])


def automation_owners(*, program: Program, automations: Iterable[Automation]) -> list[Owner]:
    """The budgets the point awards of these automations may spend (theirs and the program's)."""
    paying = [a for a in automations if a.award_points]
    if not paying:
        return []
    owners = [owner_of(a) for a in paying if has_budget(a)]
    program_budget = program_owner(program)
    return owners + ([program_budget] if program_budget is not None else [])


# --------------------------------------------------------------------------------------------
# Reading and locking the counters


def _specs(*, program: Program, owners: Iterable[Owner], now: dt.datetime) -> list[tuple[Owner, str, int]]:
    specs = [(o, key, limit) for o in owners for key, limit in o.limits(program=program, now=now)]
    return sorted(specs, key=lambda s: (s[0].scope, s[0].owner_id, s[1]))


def _gate(program: Program, specs: list[tuple[Owner, str, int]], rows: Iterable[BudgetUse]) -> BudgetGate:
    by_key = {(r.scope, r.owner_id, r.period_key): r for r in rows}
    counters: dict[Key, list[Counter]] = {}
    for owner, key, limit in specs:
        row = by_key.get((owner.scope, owner.owner_id, key))
        used = row.used if row is not None else 0
        counters.setdefault(owner.key, []).append(
            Counter(
                owner=owner,
                period_key=key,
                limit=limit,
                used=used,
                start=used,
                row_id=row.pk if row is not None else None,
                alerted_80=row is not None and row.alerted_80_at is not None,
                alerted_100=row is not None and row.alerted_100_at is not None,
            )
        )
    return BudgetGate(program_id=program.pk, counters=counters)


def gate_read(*, program: Program, owners: Sequence[Owner], now: dt.datetime) -> BudgetGate | None:
    """The budgets' use as of `now`, without locking (the preview). None without budgets.
    Queries: 1 (none without budgets)."""
    specs = _specs(program=program, owners=owners, now=now)
    if not specs:
        return None
    wanted = {(o.scope, o.owner_id, key) for o, key, _ in specs}
    rows = BudgetUse.objects.filter(
        scope__in={s for s, _, _ in wanted},
        owner_id__in={o for _, o, _ in wanted},
        period_key__in={k for _, _, k in wanted},
    )
    return _gate(program, specs, [r for r in rows if (r.scope, r.owner_id, r.period_key) in wanted])


_ENSURE_SQL = (
    f"INSERT INTO {USES} (program_id, scope, owner_id, period_key, used, limit_points, updated_at) "
    "SELECT %s, u.scope, u.owner_id, u.period_key, 0, u.limit_points, %s "
    "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bigint[]) WITH ORDINALITY "
    "AS u(scope, owner_id, period_key, limit_points, n) ORDER BY u.n "
    "ON CONFLICT ON CONSTRAINT budget_use_once DO NOTHING"
)


def gate_lock(*, program: Program, owners: Sequence[Owner], now: dt.datetime) -> BudgetGate | None:
    """The budgets' counters as of `now`, created if missing and locked until the caller's
    transaction ends: call it before locking any member row (module docstring). None without
    budgets. Queries: 2 (none without budgets)."""
    specs = _specs(program=program, owners=owners, now=now)
    if not specs:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            _ENSURE_SQL,
            [
                program.pk,
                now,
                [o.scope for o, _, _ in specs],
                [o.owner_id for o, _, _ in specs],
                [key for _, key, _ in specs],
                [limit for _, _, limit in specs],
            ],
        )
    rows = budget_uses_for_update(keys=[(o.scope, o.owner_id, key) for o, key, _ in specs])
    return _gate(program, specs, rows)


# --------------------------------------------------------------------------------------------
# Spending

_SPEND_SQL = (
    f"UPDATE {USES} b SET used = b.used + u.delta, limit_points = u.limit_points, updated_at = %s, "
    "alerted_80_at = CASE WHEN u.alert_80 THEN %s ELSE b.alerted_80_at END, "
    "alerted_100_at = CASE WHEN u.alert_100 THEN %s ELSE b.alerted_100_at END "
    "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bool[], %s::bool[]) "
    "AS u(id, delta, limit_points, alert_80, alert_100) WHERE b.id = u.id"
)


def gate_spend(
    *,
    gate: BudgetGate | None,
    program: Program,
    member_id: int | None,
    now: dt.datetime,
    activity: Activity | None = None,
) -> list[tuple[Counter, int]]:
    """After the awards were decided (in the transaction that locked the gate): add what was
    given to the counters, record the cuts (`BudgetCut`) and send the 80 % / 100 % alerts that
    the awards crossed, once per budget, period and threshold. Returns the (counter, percent)
    alerts sent. Queries: 1 when a budget paid, + 1 when an award was cut, + the receivers'."""
    if gate is None:
        return []
    changed: list[Counter] = []
    alerts: list[tuple[Counter, int]] = []
    for counters in gate.counters.values():
        for counter in counters:
            if counter.used == counter.start or counter.row_id is None:
                continue
            changed.append(counter)
            percent = counter.used * 100 // counter.limit if counter.limit else 100
            if percent >= 80 and not counter.alerted_80:
                counter.alerted_80 = True
                alerts.append((counter, 80))
            if percent >= 100 and not counter.alerted_100:
                counter.alerted_100 = True
                alerts.append((counter, 100))
    if changed:
        alerted = {(id(c), t) for c, t in alerts}
        with connection.cursor() as cursor:
            cursor.execute(
                _SPEND_SQL,
                [
                    now,
                    now,
                    now,
                    [c.row_id for c in changed],
                    [c.used - c.start for c in changed],
                    [c.limit for c in changed],
                    [(id(c), 80) in alerted for c in changed],
                    [(id(c), 100) in alerted for c in changed],
                ],
            )
    if gate.notes:
        BudgetCut.objects.bulk_create(
            BudgetCut(
                program_id=program.pk,
                activity=activity,
                member_id=n.member_id or member_id,
                rule_id=n.rule_id,
                automation_id=n.automation_id,
                budget_scope=n.budget.scope,
                wanted=n.wanted,
                given=n.given,
                reason=n.reason,
                at=now,
            )
            for n in gate.notes
        )
    for counter, threshold in alerts:
        signals.budget_threshold_in_transaction.send(
            sender=BudgetUse,
            program=program,
            budget={
                "scope": counter.owner.scope,
                "id": counter.owner.owner_id,
                "name": counter.owner.name or program.name,
                "what": counter.owner.what,
                "period": counter.period_key,
                "period_label": period_label(counter.period_key),
                "limit": counter.limit,
                "used": counter.used,
                "percent": threshold,
            },
            now=now,
        )
    gate.notes = []
    for counter in changed:
        counter.start = counter.used
    return alerts


# --------------------------------------------------------------------------------------------
# Reading a budget's use (the admin)


def uses_of(items: Sequence[tuple[Program, Owner]], *, now: dt.datetime) -> dict[Key, list[Counter]]:
    """The current use of each budget (its limits in the periods around `now`), by owner key,
    for a page of rules, automations or programs. Queries: 1 (none when none has a budget)."""
    specs = [(o, key, limit) for program, o in items for key, limit in o.limits(program=program, now=now)]
    if not specs:
        return {}
    rows = BudgetUse.objects.filter(
        scope__in={o.scope for o, _, _ in specs},
        owner_id__in={o.owner_id for o, _, _ in specs},
        period_key__in={key for _, key, _ in specs},
    ).only("scope", "owner_id", "period_key", "used", "alerted_80_at", "alerted_100_at")
    return _gate(items[0][0], specs, rows).counters


def use_line(counter: Counter) -> str:
    """One limit's use in words: "1,250 / 5,000 points (25 %), month 2026-12"."""
    percent = counter.used * 100 // counter.limit if counter.limit else 100
    return f"{counter.used:,} / {counter.limit:,} points ({percent} %), {period_label(counter.period_key)}"
