import pytest

from loyalty.models import Member
from tests.loyalty.factories import MemberFactory

from .factories import CardFactory


@pytest.fixture
def unassigned_card(program):
    return CardFactory(program=program)


@pytest.fixture
def active_card(member):
    return CardFactory(member=member)


@pytest.fixture
def blocked_card(member):
    return CardFactory(member=member, blocked=True)


@pytest.fixture
def anonymous_member(program):
    """A member enrolled by a purchase on an unassigned card: no id, email or login."""
    return MemberFactory(
        program=program, external_id=None, email="", first_name="", last_name="", enrollment_channel=Member.Channel.CARD
    )


@pytest.fixture
def anonymous_card(anonymous_member):
    """An active, unclaimed card of an anonymous member."""
    return CardFactory(member=anonymous_member)
