"""A program with a bit of everything a program file holds (tests of programfiles)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from loyalty.services import program_create
from notifications import emails
from notifications.services import endpoint_create
from rewards.models import Reward, RewardSettings
from tiers.models import Tier
from workflows import builtins
from workflows.models import Automation, EarningRule, ProgramBudget, ReferralSettings


def build_program(slug: str = "shop"):
    """A program with a bit of everything a file holds."""
    program = program_create(name="Shop", slug=slug, currency="EUR", timezone="Europe/Paris", expiry_days=365)
    builtins.builtin_rules_install(program=program)
    silver = Tier.objects.create(program=program, name="Silver", position=1, threshold=100, multiplier=Decimal("1.5"))
    gold = Tier.objects.create(program=program, name="Gold", position=2, threshold=500, multiplier=2)
    weekend = EarningRule.objects.create(
        program=program,
        name="Double weekend",
        trigger="purchase",
        kind="per_amount",
        multiplier=2,
        min_amount=Decimal("20"),
        days_of_week=[5, 6],
        include_categories=["coffee", "tea"],
        starts_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        ends_at=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
        cap_per_day=500,
        budget_total=100_000,
        budget_per_period=5_000,
        budget_period="week",
        priority=10,
    )
    weekend.tiers.set([silver, gold])
    reward = Reward.objects.create(
        program=program, name="5 off", kind="amount_off", value=5, cost_points=500, min_tier=silver, stock=100
    )
    Reward.objects.create(program=program, name="Free shipping", kind="free_shipping", cost_points=300)
    RewardSettings.objects.create(program=program, refund_expired_coupons=False)
    ReferralSettings.objects.create(program=program, is_active=True, referrer_points=300, friend_points=150)
    ProgramBudget.objects.create(program=program, budget_per_period=50_000, budget_period="month")
    automation = Automation.objects.create(
        program=program,
        name="Gold gift",
        trigger="tier_changed",
        period="once",
        award_points=50,
        budget_per_period=2_000,
        budget_period="month",
        reward_id=reward.pk,
        email_subject="Hello {{ member.first_name }}",
        email_body="You get {{ points }} points.\nEnjoy!",
    )
    automation.tiers.set([gold])
    emails.email_settings_save(program=program, from_name="Shop team", reply_to="help@shop.example")
    emails.email_template_save(
        program=program,
        kind="welcome",
        language="en",
        subject="Welcome to {{ program.name }}",
        html_body="<p>Hello {{ member.first_name }}</p>",
        text_body="Hello {{ member.first_name }}\nSee you soon.",
    )
    endpoint_create(
        program=program, url="https://hooks.shop.example/loyalty", events=["points.earned"], description="CRM"
    )
    return program
