import pytest
from django.core.cache import cache

from loyalty.models import Member
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory

from .factories import CardFactory


@pytest.fixture
def program(db):
    return ProgramFactory()


@pytest.fixture
def other_program(db):
    return ProgramFactory()


@pytest.fixture
def member(program):
    return MemberFactory(program=program)


@pytest.fixture
def other_member(program):
    return MemberFactory(program=program)


@pytest.fixture
def staff(db):
    return StaffFactory(is_superuser=True)


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


@pytest.fixture(autouse=True)
def _empty_cache():
    """The PIN failure counters live in the (in-memory) cache: no test sees another's."""
    cache.clear()
    yield
    cache.clear()
