"""The arithmetic of earning rules, free of queries: given the rules, the activity's facts,
what each rule already gave the member (for the caps) and the tier multiplier, which rules
fire and for how many points. `services.activity_report` and `selectors.activity_preview`
share it, so a preview shows exactly what a report would post.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Protocol

from .models import EarningRule

Kind = EarningRule.Kind
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Item:
    sku: str
    category: str
    quantity: int
    unit_price: Decimal

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class ActivityFacts:
    """What the rules read of an activity. `weekday` is in the program's time zone (0 = Monday)."""

    type: str
    occurred_at: dt.datetime
    weekday: int
    amount: Decimal | None = None
    channel: str = ""
    items: tuple[Item, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Points a rule already gave the member in the periods around the activity."""

    day: int = 0
    week: int = 0
    month: int = 0
    lifetime: int = 0
    # Points the rule gave for activities reported on the day this one is reported: a daily
    # cap holds for the reporting day too, so backdating cannot reuse a past day's unused cap.
    reported_day: int = 0


@dataclass(frozen=True)
class Award:
    rule: EarningRule
    points: int
    base: Decimal = field(default=Decimal(0))

    @property
    def reason(self) -> str:
        return self.rule.name[:255]


class Budgets(Protocol):
    """What is left of the budgets a rule spends (`workflows.budgets.BudgetGate`): `take`
    returns the points the rule may give out of `points` (fewer when a budget runs out, with
    the reason recorded by the gate) and counts them as spent."""

    def take(self, rule: EarningRule, points: int) -> int: ...


def parse_items(items: Iterable[Mapping[str, Any]]) -> tuple[Item, ...]:
    """Items as stored on an activity (unit prices as strings or numbers)."""
    parsed = []
    for raw in items:
        try:
            price = Decimal(str(raw.get("unit_price") or 0))
        except InvalidOperation:
            price = Decimal(0)
        parsed.append(
            Item(
                sku=str(raw.get("sku") or ""),
                category=str(raw.get("category") or ""),
                quantity=int(raw.get("quantity") or 1),
                unit_price=price,
            )
        )
    return tuple(parsed)


def _item_matches(rule: EarningRule, item: Item) -> bool:
    if rule.include_categories and item.category not in rule.include_categories:
        return False
    if rule.include_skus and item.sku not in rule.include_skus:
        return False
    return item.category not in rule.exclude_categories and item.sku not in rule.exclude_skus


def _filters_items(rule: EarningRule) -> bool:
    return bool(rule.include_categories or rule.exclude_categories or rule.include_skus or rule.exclude_skus)


def _money(value: Decimal | None) -> str:
    return f"{(value or Decimal(0)):.2f}"


def condition_failure(rule: EarningRule, facts: ActivityFacts, *, tier_id: int | None = None) -> str | None:
    """The first of the rule's conditions the activity fails, in words; None when all hold.
    `conditions_met` is this returning None, so the explanation cannot drift from the rule."""
    if not rule.is_active:
        return "the rule is switched off"
    if rule.trigger != facts.type:
        return f"the activity is a {facts.type}, the rule is for {rule.trigger}"
    allowed_tiers = getattr(rule, "tier_ids", frozenset())
    if allowed_tiers and tier_id not in allowed_tiers:
        return (
            "the member's tier is not one the rule is for" if tier_id else "the member has no tier; the rule needs one"
        )
    if rule.channel and rule.channel != facts.channel:
        return f"channel is {facts.channel or 'not given'}, the rule needs {rule.channel}"
    if rule.starts_at and facts.occurred_at < rule.starts_at:
        return "outside the campaign dates (before its start)"
    if rule.ends_at and facts.occurred_at >= rule.ends_at:
        return "outside the campaign dates (after its end)"
    if rule.days_of_week and facts.weekday not in rule.days_of_week:
        days = ", ".join(WEEKDAY_NAMES[d] for d in sorted(rule.days_of_week))
        return f"on a {WEEKDAY_NAMES[facts.weekday]}, the rule runs on {days}"
    if rule.min_amount is not None and (facts.amount or Decimal(0)) < rule.min_amount:
        return f"amount {_money(facts.amount)} below minimum {_money(rule.min_amount)}"
    # Item filters on a purchase with items: at least one item must qualify.
    if facts.items and _filters_items(rule) and not any(_item_matches(rule, i) for i in facts.items):
        return "no item of the order is in the rule's categories or SKUs"
    return None


def conditions_met(rule: EarningRule, facts: ActivityFacts, *, tier_id: int | None = None) -> bool:
    """The rule's trigger, channel, member tier, window, day of week and minimum amount.
    The tier condition reads `rule.tier_ids` (set by `selectors.active_rules`; absent = any)."""
    return condition_failure(rule, facts, tier_id=tier_id) is None


def base_points(rule: EarningRule, facts: ActivityFacts, *, earn_rate: Decimal) -> Decimal:
    """Points before multipliers and rounding."""
    rate = rule.points if rule.points is not None else earn_rate
    matching = [i for i in facts.items if _item_matches(rule, i)]
    if rule.kind == Kind.FIXED:
        return rate
    if rule.kind == Kind.PER_AMOUNT:
        # Item filters restrict the amount to the qualifying items; otherwise the order amount.
        if facts.items and _filters_items(rule):
            return rate * sum((i.total for i in matching), Decimal(0))
        return rate * (facts.amount or Decimal(0))
    if rule.kind == Kind.PER_CATEGORY:
        return rate * sum((i.total for i in matching), Decimal(0))
    # PER_ITEM and PER_SKU: per unit bought (a per-SKU rule's include_skus say which).
    return rate * sum(i.quantity for i in matching)


_CAP_NAMES = {
    "cap_per_order": "the per-order cap",
    "cap_per_day": "the daily cap",
    "cap_per_week": "the weekly cap",
    "cap_per_month": "the monthly cap",
    "cap_lifetime": "the lifetime cap",
}


def _cap_detail(points: int, rule: EarningRule, usage: Usage) -> tuple[int, str]:
    """`points` within the rule's caps, and which cap cut them ("" when none did)."""
    limits = [
        ("cap_per_order", 0),
        ("cap_per_day", usage.day),
        ("cap_per_day", usage.reported_day),
        ("cap_per_week", usage.week),
        ("cap_per_month", usage.month),
        ("cap_lifetime", usage.lifetime),
    ]
    cut = ""
    for name, used in limits:
        cap = getattr(rule, name)
        if cap is not None and points > max(0, cap - used):
            points = max(0, cap - used)
            cut = f"{_CAP_NAMES[name]} {cap}" + (f" (used {used})" if name != "cap_per_order" else "")
    return points, cut


def _cap(points: int, rule: EarningRule, usage: Usage) -> int:
    return _cap_detail(points, rule, usage)[0]


class Outcome:
    FIRED = "fired"
    NOT_MET = "not_met"  # a condition failed
    ZERO = "zero"  # conditions met, but the points round or cap to 0
    STOPPED = "stopped"  # a non-stackable rule above fired


@dataclass(frozen=True)
class Step:
    """What one rule did for an activity (`explain`); `evaluate` keeps the fired ones."""

    rule: EarningRule
    outcome: str
    reason: str = ""  # why it did not fire, in words
    base: Decimal = Decimal(0)
    multiplier: Decimal = Decimal(1)
    tier_multiplier: Decimal = Decimal(1)
    uncapped: int = 0
    cap: str = ""  # the cap that cut the points ("the daily cap 500 (used 450)")
    points: int = 0

    @property
    def fired(self) -> bool:
        return self.outcome == Outcome.FIRED


def _steps(
    rules: Sequence[EarningRule],
    facts: ActivityFacts,
    *,
    usage: Mapping[int, Usage],
    earn_rate: Decimal,
    tier_multiplier: Decimal,
    tier_id: int | None,
    every: bool,
    budgets: Budgets | None = None,
) -> list[Step]:
    """The one walk over the rules that `evaluate` (fired steps only, `every=False`: no step
    is built for a rule that does not fire) and `explain` (every rule) share. `budgets` cut a
    rule's capped points to what its budgets have left (the gate records why)."""
    steps: list[Step] = []
    stopper: EarningRule | None = None
    tier_factor = tier_multiplier if facts.type == "purchase" else Decimal(1)
    for rule in sorted(rules, key=lambda r: (-r.priority, r.id or 0)):
        if stopper is not None:
            if not every:
                break
            steps.append(Step(rule, Outcome.STOPPED, f"stopped: rule {stopper.name} above is not stackable"))
            continue
        failure = condition_failure(rule, facts, tier_id=tier_id)
        if failure is not None:
            if every:
                steps.append(Step(rule, Outcome.NOT_MET, failure))
            continue
        base = base_points(rule, facts, earn_rate=earn_rate)
        points = int((base * (rule.multiplier * tier_factor)).to_integral_value(rounding=ROUND_FLOOR))
        capped, cut = _cap_detail(points, rule, usage.get(rule.id, Usage()))
        if budgets is not None and capped > 0:
            allowed = budgets.take(rule, capped)
            if allowed < capped:
                cut = f"{cut} and " if cut else ""
                cut += f"its budget ({allowed} of {capped} left)" if allowed else "its budget, used up"
            capped = allowed
        fired = capped > 0
        if fired or every:
            reason = ""
            if not fired:
                reason = f"capped to 0 by {cut}" if cut else f"gives 0 points (base {base.normalize():f})"
            steps.append(
                Step(
                    rule,
                    Outcome.FIRED if fired else Outcome.ZERO,
                    reason,
                    base=base,
                    multiplier=rule.multiplier,
                    tier_multiplier=tier_factor,
                    uncapped=points,
                    cap=cut,
                    points=capped,
                )
            )
        if fired and not rule.stackable:
            stopper = rule
    return steps


def evaluate(
    rules: Sequence[EarningRule],
    facts: ActivityFacts,
    *,
    usage: Mapping[int, Usage],
    earn_rate: Decimal,
    tier_multiplier: Decimal = Decimal(1),
    tier_id: int | None = None,
    budgets: Budgets | None = None,
) -> list[Award]:
    """The awards of the firing rules, by descending priority. Points = floor(base x rule
    multiplier x tier multiplier (purchases only)), then capped, then cut to what the rule's
    and the program's budgets have left (`budgets`, optional; the gate records why). A rule
    fires when it gives at least one point; a non-stackable rule that fires stops the rules
    after it (one whose budget is used up does not fire)."""
    steps = _steps(
        rules,
        facts,
        usage=usage,
        earn_rate=earn_rate,
        tier_multiplier=tier_multiplier,
        tier_id=tier_id,
        every=False,
        budgets=budgets,
    )
    return [Award(rule=s.rule, points=s.points, base=s.base) for s in steps]


@dataclass(frozen=True)
class Explanation:
    """Every rule's step for one activity, highest priority first, and the stacking in words."""

    steps: list[Step]

    @property
    def points(self) -> int:
        return sum(s.points for s in self.steps if s.fired)

    @property
    def fired(self) -> list[Step]:
        return [s for s in self.steps if s.fired]

    def stacking(self, step: Step) -> str:
        """How a fired rule adds to the others, so that "x2" never silently means 3x: "the
        base rule Points per EUR gives 10 and this rule (x2) gives 20 more: 30 in all (3x the
        base)". Empty when the rule fired alone."""
        others = [s for s in self.fired if s is not step]
        if not step.fired or not others:
            return ""
        rest = sum(s.points for s in others)
        if len(others) == 1:
            who = f"the {'base ' if others[0].multiplier == 1 else ''}rule {others[0].rule.name} gives {rest}"
        else:
            who = f"the other {len(others)} rules give {rest}"
        this = f"this rule (x{Decimal(step.multiplier).normalize():f})" if step.multiplier != 1 else "this rule"
        total = rest + step.points
        ratio = f" ({Decimal(total) / Decimal(rest):.2g}x the base)" if rest else ""
        return f"{who} and {this} gives {step.points} more: {total} in all{ratio}"


def explain(
    rules: Sequence[EarningRule],
    facts: ActivityFacts,
    *,
    usage: Mapping[int, Usage],
    earn_rate: Decimal,
    tier_multiplier: Decimal = Decimal(1),
    tier_id: int | None = None,
    budgets: Budgets | None = None,
) -> Explanation:
    """`evaluate` with every rule's step: fired (base, multipliers, cap, points) or why not
    (the failed condition, the cap that took it to 0, the non-stackable rule that stopped it).
    Its fired steps are exactly `evaluate`'s awards (the same walk, `_steps`)."""
    return Explanation(
        _steps(
            rules,
            facts,
            usage=usage,
            earn_rate=earn_rate,
            tier_multiplier=tier_multiplier,
            tier_id=tier_id,
            every=True,
            budgets=budgets,
        )
    )
