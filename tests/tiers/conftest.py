import datetime as dt
from decimal import Decimal

import pytest

from loyalty.models import Program
from tests.loyalty.factories import ProgramFactory

from .factories import TierFactory

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def now():
    return NOW


@pytest.fixture
def program(db):
    """Points earned over a rolling 30-day window."""
    return ProgramFactory(tier_window=Program.TierWindow.ROLLING, tier_window_days=30, expiry_days=None)


@pytest.fixture
def silver(program):
    return TierFactory(program=program, name="Silver", position=1, threshold=Decimal("100"), multiplier=Decimal("1.5"))


@pytest.fixture
def gold(program):
    return TierFactory(
        program=program, name="Gold", position=2, threshold=Decimal("500"), multiplier=Decimal("2"), retention_days=60
    )


@pytest.fixture
def tiers(silver, gold):
    return [silver, gold]
