import datetime as dt
import zoneinfo

import pytest

from loyalty import services as ledger
from tests.loyalty.factories import MemberFactory, ProgramFactory

from .factories import RewardFactory

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=PARIS)


@pytest.fixture
def now():
    return NOW


@pytest.fixture
def program(db):
    return ProgramFactory(timezone="Europe/Paris", expiry_days=365, min_redemption=100)


@pytest.fixture
def member(program):
    """A member with 1,000 available points, earned 10 days before NOW."""
    m = MemberFactory(program=program)
    ledger.points_earn(program=program, member_id=m.pk, points=1000, occurred_at=NOW - dt.timedelta(days=10), now=NOW)
    return m


@pytest.fixture
def reward(program):
    return RewardFactory(program=program)
