"""`load_demo` shows the rewards: a catalog of every kind and coupons in each state."""

import io

import pytest
from django.core.management import call_command

from loyalty.selectors import ledger_problems
from rewards.models import Redemption, Reward

pytestmark = pytest.mark.django_db


def test_demo_has_a_catalog_and_coupons_and_a_sound_ledger():
    out = io.StringIO()
    call_command("load_demo", members=120, stdout=out)
    assert "Rewards: 6 in the catalog" in out.getvalue()
    assert set(Reward.objects.values_list("kind", flat=True)) >= {
        "amount_off",
        "percent_off",
        "free_shipping",
        "free_product",
        "points_for_amount",
        "experience",
    }
    statuses = set(Redemption.objects.values_list("status", flat=True))
    assert {"issued", "used"} <= statuses
    assert not list(ledger_problems())
    before = Redemption.objects.count()
    call_command("load_demo", members=120, stdout=io.StringIO())
    assert Redemption.objects.count() == before
