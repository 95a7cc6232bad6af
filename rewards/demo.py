"""The rewards part of `manage.py load_demo` (run on `demo_loaded`, after the tiers): a catalog
of every kind, then coupons redeemed by demo members through the service, some used at the
till, some cancelled (points back), some still open. Once per program: a program with rewards
is left alone."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from loyalty.errors import LoyaltyError
from loyalty.models import Member, Program

from . import services
from .models import Redemption, Reward, RewardSettings


def demo_rewards_load(*, program: Program, now: dt.datetime) -> str:
    if Reward.objects.filter(program=program).exists():
        return "Rewards: the demo program has rewards; left as they are."
    RewardSettings.objects.get_or_create(program=program, defaults={"refund_expired_coupons": True})
    gold = program.tiers.filter(name="Gold").first()
    kinds = Reward.Kind
    catalog = [
        {
            "name": "€5 off your order",
            "kind": kinds.AMOUNT_OFF,
            "value": Decimal("5"),
            "cost_points": 250,
            "valid_days": 60,
        },
        {"name": "10% off", "kind": kinds.PERCENT_OFF, "value": Decimal("10"), "cost_points": 400, "valid_days": 30},
        {"name": "Free shipping", "kind": kinds.FREE_SHIPPING, "cost_points": 150, "valid_days": 30},
        {
            "name": "Free bag of house blend",
            "kind": kinds.FREE_PRODUCT,
            "sku": "BEANS-HOUSE-250",
            "cost_points": 600,
            "per_member_limit": 2,
        },
        {
            "name": "Beans as money off",
            "kind": kinds.POINTS_FOR_AMOUNT,
            "value": Decimal("0.01"),
            "points_step": 100,
            "points_min": 100,
            "points_max": 5000,
            "description": "Spend beans at the till: 100 beans = €1.",
        },
        {
            "name": "Roastery tour for two",
            "kind": kinds.EXPERIENCE,
            "cost_points": 1500,
            "min_tier": gold,
            "stock": 10,
            "per_member_limit": 1,
            "description": "A Saturday morning at the roastery with the head roaster.",
        },
    ]
    rewards = [
        services.reward_create(program=program, position=i, **fields) for i, fields in enumerate(catalog, start=1)
    ]
    rng = random.Random(7)
    members = list(Member.objects.filter(program=program, status="active", available__gte=150).order_by("id")[:40])
    # Redeemed over the last four weeks, in time order, so the dashboard's reward charts (which
    # read finished days) have a history; used or cancelled a few hours to days later.
    moments = sorted(now - dt.timedelta(days=rng.uniform(1.5, 28)) for _ in members)
    issued = 0
    for i, (member, at) in enumerate(zip(members, moments, strict=True)):
        reward = rewards[i % 4] if i % 5 else rewards[4]
        points = 100 if reward.is_points_for_amount else None
        try:
            coupon = services.reward_redeem(program=program, member=member, reward=reward, points=points, now=at)
        except LoyaltyError:
            continue
        issued += 1
        code = coupon.redemption.code
        roll = rng.random()
        later = min(now, at + dt.timedelta(hours=rng.uniform(2, 30)))
        if roll < 0.5:
            services.redemption_use(program=program, code=code, order_id=f"DEMO-{10_000 + i}", now=later)
        elif roll < 0.65:
            services.redemption_cancel(program=program, code=code, reason="Changed their mind", now=later)
    for member in Member.objects.filter(program=program, tier_state__tier=gold, available__gte=1500)[:2]:
        try:
            services.reward_redeem(program=program, member=member, reward=rewards[5], now=now)
            issued += 1
        except LoyaltyError:
            pass
    states = {s: Redemption.objects.filter(program=program, status=s).count() for s in ("issued", "used", "cancelled")}
    return (
        f"Rewards: {len(rewards)} in the catalog; {issued} coupons ({states['issued']} open, "
        f"{states['used']} used, {states['cancelled']} cancelled)."
    )
