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
from typing import Any

from .models import EarningRule

Kind = EarningRule.Kind


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


def conditions_met(rule: EarningRule, facts: ActivityFacts, *, tier_id: int | None = None) -> bool:
    """The rule's trigger, channel, member tier, window, day of week and minimum amount.
    The tier condition reads `rule.tier_ids` (set by `selectors.active_rules`; absent = any)."""
    if not rule.is_active or rule.trigger != facts.type:
        return False
    allowed_tiers = getattr(rule, "tier_ids", frozenset())
    if allowed_tiers and tier_id not in allowed_tiers:
        return False
    if rule.channel and rule.channel != facts.channel:
        return False
    if rule.starts_at and facts.occurred_at < rule.starts_at:
        return False
    if rule.ends_at and facts.occurred_at >= rule.ends_at:
        return False
    if rule.days_of_week and facts.weekday not in rule.days_of_week:
        return False
    if rule.min_amount is not None and (facts.amount or Decimal(0)) < rule.min_amount:
        return False
    # Item filters on a purchase with items: at least one item must qualify.
    return not (facts.items and _filters_items(rule) and not any(_item_matches(rule, i) for i in facts.items))


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


def _cap(points: int, rule: EarningRule, usage: Usage) -> int:
    limits = [
        (rule.cap_per_order, 0),
        (rule.cap_per_day, usage.day),
        (rule.cap_per_day, usage.reported_day),
        (rule.cap_per_week, usage.week),
        (rule.cap_per_month, usage.month),
        (rule.cap_lifetime, usage.lifetime),
    ]
    for cap, used in limits:
        if cap is not None:
            points = min(points, max(0, cap - used))
    return points


def evaluate(
    rules: Sequence[EarningRule],
    facts: ActivityFacts,
    *,
    usage: Mapping[int, Usage],
    earn_rate: Decimal,
    tier_multiplier: Decimal = Decimal(1),
    tier_id: int | None = None,
) -> list[Award]:
    """The awards of the firing rules, by descending priority. Points = floor(base x rule
    multiplier x tier multiplier (purchases only)), then capped. A rule fires when it gives
    at least one point; a non-stackable rule that fires stops the rules after it."""
    awards: list[Award] = []
    for rule in sorted(rules, key=lambda r: (-r.priority, r.id or 0)):
        if not conditions_met(rule, facts, tier_id=tier_id):
            continue
        base = base_points(rule, facts, earn_rate=earn_rate)
        factor = rule.multiplier * (tier_multiplier if facts.type == "purchase" else Decimal(1))
        points = int((base * factor).to_integral_value(rounding=ROUND_FLOOR))
        points = _cap(points, rule, usage.get(rule.id, Usage()))
        if points <= 0:
            continue
        awards.append(Award(rule=rule, points=points, base=base))
        if not rule.stackable:
            break
    return awards
