"""What members read about an earning rule (the portal's "How to earn" page): the rule's own
`customer_text` when staff wrote one, else a sentence written from the rule, in the active
language ("1 point per EUR 1 spent", "100 points when you join"). The French of these
sentences lives in the portal's catalogue (portal/locale), the app that shows them."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from django.utils import formats
from django.utils.translation import gettext as _

from loyalty.models import Program

from .models import EarningRule

Kind = EarningRule.Kind


def _number(value: Decimal) -> str:
    """A points figure as members read it: whole when it is whole, else up to 2 decimals."""
    if value == value.to_integral_value():
        return formats.number_format(int(value), force_grouping=True)
    return formats.number_format(value.quantize(Decimal("0.01"), rounding=ROUND_FLOOR).normalize(), force_grouping=True)


def _points_name(program: Program, value: Decimal) -> str:
    """The program's name for its points, made singular for exactly 1 when it is a plain
    plural ("points" -> "point", "stars" -> "star"; "bonus" or "miss" stay as they are)."""
    name = program.points_name
    if value == 1 and len(name) > 3 and name.endswith("s") and not name.endswith(("ss", "us")):
        return name[:-1]
    return name


def _points(rule: EarningRule, program: Program) -> Decimal:
    """Points per unit (or fixed points) after the rule's bonus multiplier; a per-amount rule
    without points uses the program's earn rate."""
    base = rule.points if rule.points is not None else program.earn_rate
    return Decimal(base) * Decimal(rule.multiplier)


def _what(rule: EarningRule, program: Program) -> str:
    value = _points(rule, program)
    points = _number(value)
    name = _points_name(program, value)
    currency = program.currency
    if rule.kind == Kind.PER_AMOUNT:
        return _("%(points)s %(name)s per %(currency)s 1 spent") % {
            "points": points,
            "name": name,
            "currency": currency,
        }
    if rule.kind == Kind.PER_ITEM:
        return _("%(points)s %(name)s per item bought") % {"points": points, "name": name}
    if rule.kind == Kind.PER_CATEGORY:
        return _("%(points)s %(name)s per %(currency)s 1 spent on %(categories)s") % {
            "points": points,
            "name": name,
            "currency": currency,
            "categories": ", ".join(rule.include_categories),
        }
    if rule.kind == Kind.PER_SKU:
        return _("%(points)s %(name)s per selected product bought") % {"points": points, "name": name}
    # Fixed points: what the member does to get them.
    values = {"points": points, "name": name}
    triggers = {
        "purchase": _("%(points)s %(name)s for every purchase"),
        "signup": _("%(points)s %(name)s when you join"),
        "birthday": _("%(points)s %(name)s on your birthday"),
        "referral": _("%(points)s %(name)s when a friend you invited joins"),
        "social_share": _("%(points)s %(name)s when you share us on social media"),
        "store_visit": _("%(points)s %(name)s when you visit one of our shops"),
        "review": _("%(points)s %(name)s when you write a review"),
    }
    template = triggers.get(rule.trigger)
    if template is not None:
        return template % values
    return _("%(points)s %(name)s: %(rule)s") % {**values, "rule": rule.name}


def rule_customer_text(rule: EarningRule, program: Program) -> str:
    """The rule as members read it, in the active language. `program` is the rule's program
    (passed in so a list of rules reads it once). No query."""
    if rule.customer_text.strip():
        return rule.customer_text.strip()
    text = _what(rule, program)
    if rule.min_amount:
        text = _("%(text)s, on orders of %(currency)s %(amount)s or more") % {
            "text": text,
            "currency": program.currency,
            "amount": formats.number_format(rule.min_amount, 2, force_grouping=True),
        }
    if rule.channel == EarningRule.Channel.ONLINE:
        text = _("%(text)s, online") % {"text": text}
    elif rule.channel == EarningRule.Channel.POS:
        text = _("%(text)s, in our shops") % {"text": text}
    return text
