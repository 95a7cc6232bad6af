"""Earning rules with the tiers app: a purchase can upgrade the member at once, and purchase
points then earn at the tier's multiplier. Skipped while the tiers app is not installed."""

import datetime as dt
from decimal import Decimal

import pytest
from django.apps import apps

from workflows import services

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not apps.is_installed("tiers"), reason="the tiers app is not installed"),
]


def test_purchase_upgrades_the_member_and_the_next_purchase_earns_the_tier_multiplier(program, member):
    from tiers.models import Tier

    Tier.objects.create(program=program, name="Gold", position=1, threshold=Decimal("100"), multiplier=Decimal("2"))
    EarningRuleFactory(program=program, kind="per_amount", points=None)
    EarningRuleFactory(program=program, trigger="review", points=10)

    def buy(order_id, amount, when):
        return services.activity_report(
            program=program,
            member=member,
            type="purchase",
            occurred_at=when,
            order_id=order_id,
            amount=Decimal(amount),
            now=when,
        )

    assert buy("T-1", "100.00", WEDNESDAY_NOON).points == 100
    assert member.tier_state.tier.name == "Gold"
    later = WEDNESDAY_NOON + dt.timedelta(hours=1)
    assert buy("T-2", "10.00", later).points == 20
    review = services.activity_report(program=program, member=member, type="review", occurred_at=later, now=later)
    assert review.points == 10  # the multiplier is for purchase points only


def test_refund_after_a_tier_change_takes_back_what_the_order_earned(program, member):
    from tiers.models import Tier

    Tier.objects.create(program=program, name="Gold", position=1, threshold=Decimal("100"), multiplier=Decimal("2"))
    EarningRuleFactory(program=program, kind="per_amount", points=None)
    services.activity_report(
        program=program, member=member, type="purchase", occurred_at=WEDNESDAY_NOON, order_id="T-1", amount=100
    )
    gold = services.activity_report(
        program=program, member=member, type="purchase", occurred_at=WEDNESDAY_NOON, order_id="T-2", amount=10
    )
    assert gold.points == 20
    refund = services.refund_report(program=program, order_id="T-1", amount=Decimal("50.00"))
    assert [e.points for e in refund.entries] == [-50]  # earned at 1x, reversed at 1x
    refund = services.refund_report(program=program, order_id="T-2", amount=Decimal("10.00"))
    assert [e.points for e in refund.entries] == [-20]
