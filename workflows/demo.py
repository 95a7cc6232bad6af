"""The earning rules of `manage.py load_demo` (run on `demo_loaded`), once per program: a
program with rules is left alone. The demo's history was posted at the program's base rate
before these rules existed; from now on purchases earn through them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from loyalty.models import Program

from . import services
from .models import EarningRule


def demo_rules_load(*, program: Program, now: dt.datetime) -> str:
    if program.earning_rules.filter(builtin="").exists():
        return "Earning rules: the demo program has rules; left as they are."
    weekend_start = program.start_of_day(program.local_date(now) + dt.timedelta(days=(5 - now.weekday()) % 7))
    rules = [
        {
            "name": "1 bean per euro",
            "trigger": "purchase",
            "kind": EarningRule.Kind.PER_AMOUNT,
            "points": Decimal(1),
            "priority": 10,
        },
        {
            "name": "Beans lovers: +2 per euro on coffee beans",
            "trigger": "purchase",
            "kind": EarningRule.Kind.PER_CATEGORY,
            "points": Decimal(2),
            "include_categories": ["beans"],
            "priority": 5,
        },
        {
            "name": "Double beans weekend",
            "trigger": "purchase",
            "kind": EarningRule.Kind.PER_AMOUNT,
            "points": Decimal(1),
            "starts_at": weekend_start,
            "ends_at": weekend_start + dt.timedelta(days=2),
            "priority": 1,
        },
        {
            "name": "Welcome bonus",
            "trigger": "signup",
            "kind": EarningRule.Kind.FIXED,
            "points": Decimal(50),
            "cap_lifetime": 50,
        },
        {
            "name": "Store visit",
            "trigger": "store_visit",
            "kind": EarningRule.Kind.FIXED,
            "points": Decimal(5),
            "cap_per_day": 5,
        },
        {
            "name": "Product review",
            "trigger": "review",
            "kind": EarningRule.Kind.FIXED,
            "points": Decimal(20),
            "cap_per_month": 60,
        },
    ]
    for fields in rules:
        services.rule_create(program=program, **fields)
    return f"Earning rules: {len(rules)} rules (base rate, category bonus, weekend campaign, signup, visits, reviews)."
