"""The earning rules of `manage.py load_demo` (run on `demo_loaded`), once per program: a
program with rules is left alone. The demo's history was posted at the program's base rate
before these rules existed; from now on purchases earn through them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from loyalty import services as ledger
from loyalty.models import Member, Program

from . import builtins, fraud, referrals, services
from .birthdays import birthdays_award
from .models import Builtin, EarningRule, FraudLimits, ProgramBudget, ReferralSettings


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


def demo_built_ins_load(*, program: Program, now: dt.datetime) -> str:
    """The built-in activities of the demo: the ready-made rules with the birthday bonus
    switched on and awarded as of `now` (the last three days' birthdays), and a referral offer
    with friends in each state (rewarded by a first purchase, pending, rejected). Once: a
    program with referral settings is left alone."""
    if ReferralSettings.objects.filter(program=program).exists():
        return "Built-ins: the demo program has them; left as they are."
    builtins.builtin_rules_install(program=program)
    birthday = EarningRule.objects.get(program=program, builtin=Builtin.BIRTHDAY)
    birthday.is_active, birthday.name, birthday.points = True, "Happy birthday beans", Decimal(100)
    birthday.save(update_fields=["is_active", "name", "points"])  # signals: the rules cache forgets
    ReferralSettings.objects.create(
        program=program,
        is_active=True,
        referrer_points=200,
        friend_points=100,
        min_order_amount=Decimal("15.00"),
        monthly_cap=5,
        qualify_within_days=60,
    )
    referrers = list(Member.objects.filter(program=program, status="active").exclude(email="").order_by("id")[:3])
    states = []
    for i, referrer in enumerate(referrers):
        friend, _ = ledger.member_enrol(
            program=program,
            external_id=f"demo-friend-{i + 1}",
            # The third: a self-referral (the referrer's own mailbox with a +tag: one email is
            # one member per program, so the same address itself would be refused).
            email=_tagged(referrer.email, "friend") if i == 2 else f"friend{i + 1}@example.com",
            first_name=["Noor", "Tomás", "Ines"][i],
            last_name="Demo",
            birthday=dt.date(1990 + i, 3 + i, 12),
            referred_by=referrer,
            channel=Member.Channel.ONLINE,
            now=now - dt.timedelta(days=10),
        )
        referral = referrals.referral_create(friend=friend, referrer=referrer, now=now - dt.timedelta(days=10))
        if referral is not None and i == 0:
            services.activity_report(
                program=program,
                member=friend,
                type="purchase",
                occurred_at=now - dt.timedelta(days=2),
                order_id="DEMO-REFERRAL-1",
                amount=Decimal("32.50"),
                currency=program.currency,
                channel="online",
                idempotency_key="demo:referral:1",
                now=now,
            )
            referral.refresh_from_db()
        states.append(referral.status if referral else "none")
    birthdays = birthdays_award(now=now, program=program)
    return (
        f"Built-ins: 5 ready-made rules (birthday on: {birthdays.members} birthday bonuses today); "
        f"referral offer on, friends {', '.join(states)}."
    )


def _tagged(email: str, tag: str) -> str:
    """`ada@example.com` -> `ada+tag@example.com`: another address, the same mailbox."""
    local, _, domain = email.partition("@")
    return f"{local}+{tag}@{domain}"


BUDGET_RULE = "Beans lovers: +2 per euro on coffee beans"


def demo_budgets_load(*, program: Program, now: dt.datetime) -> str:
    """The demo's budgets (docs/budgets.md): the coffee-beans bonus may give 500 points a
    month, and five bean orders of today use about 70 % of it (the admin's change list shows
    it); the program as a whole may give 500,000 points a month. Once: a program with a budget
    is left alone."""
    if ProgramBudget.objects.filter(program=program).exists():
        return "Budgets: the demo program has them; left as they are."
    ProgramBudget.objects.create(program=program, budget_per_period=500_000, budget_period="month")
    rule = EarningRule.objects.filter(program=program, name=BUDGET_RULE).first()
    if rule is None:
        return "Budgets: a program budget of 500,000 points a month."
    rule.budget_per_period, rule.budget_period = 500, "month"
    rule.save(update_fields=["budget_per_period", "budget_period"])
    buyers = list(Member.objects.filter(program=program, status="active").order_by("id")[:5])
    given = 0
    for i, member in enumerate(buyers):
        result = services.activity_report(
            program=program,
            member=member,
            type="purchase",
            occurred_at=now - dt.timedelta(minutes=30 * (i + 1)),
            order_id=f"DEMO-BEANS-{i + 1}",
            amount=Decimal("24.00"),
            currency=program.currency,
            channel="pos",
            items=[{"sku": "BEANS-1KG", "category": "beans", "quantity": 1, "unit_price": "24.00"}],
            idempotency_key=f"demo:budget:{i + 1}",
            now=now,
        )
        given += sum(a.points for a in result.awards if a.rule_id == rule.pk)
    return f"Budgets: {rule.name!r} {given} of 500 points this month used; the program 500,000 a month."


def demo_fraud_load(*, program: Program, now: dt.datetime) -> str:
    """The demo's fraud limits (docs/fraud.md) and two members waiting in the review queue: one
    who rang up the same amount four times this morning, one whose single purchase earned more
    than a day's points. Once: a program with fraud limits is left alone."""
    if FraudLimits.objects.filter(program=program).exists():
        return "Fraud limits: the demo program has them; left as they are."
    FraudLimits.objects.create(
        program=program,
        is_active=True,
        max_activities_per_day=8,
        max_points_per_day=1500,
        max_refunds_per_month=4,
        max_members_per_card=3,
        max_same_amount_per_day=3,
    )
    fraud.limits_forget()
    # Customers of the history (not the referral friends, whose states the demo shows).
    members = list(
        Member.objects.filter(program=program, status="active", referred_by__isnull=True)
        .exclude(email="")
        .filter(external_id__regex=r"^demo-[0-9]+$")  # not the card, friend or story members
        .order_by("-id")[:2]
    )
    held = 0
    plan = [[Decimal("19.90")] * 4, [Decimal("1850.00")]] if len(members) == 2 else []
    for member, amounts in zip(members, plan, strict=False):
        for n, amount in enumerate(amounts, start=1):
            result = services.activity_report(
                program=program,
                member=member,
                type="purchase",
                occurred_at=now - dt.timedelta(minutes=60 - n),
                order_id=f"DEMO-REVIEW-{member.pk}-{n}",
                amount=amount,
                currency=program.currency,
                channel="pos",
                idempotency_key=f"demo:review:{member.pk}:{n}",
                now=now,
            )
            held += int(result.held_for_review)
    return f"Fraud limits on; {held} activities held in the review queue."
