import datetime as dt
import zoneinfo

import pytest

from tests.loyalty.factories import MemberFactory, ProgramFactory

from .factories import EarningRuleFactory

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
# A Wednesday, noon in Paris.
WEDNESDAY_NOON = dt.datetime(2026, 3, 4, 12, 0, tzinfo=PARIS)


@pytest.fixture
def program(db):
    return ProgramFactory(timezone="Europe/Paris", earn_rate=1, expiry_days=None)


@pytest.fixture
def per_amount_rule(program):
    """1 point per euro at the program's earn rate."""
    return EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None)


@pytest.fixture
def when():
    return WEDNESDAY_NOON


@pytest.fixture
def other_program_member(db):
    return MemberFactory(program=ProgramFactory())
