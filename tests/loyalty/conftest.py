import pytest

from .factories import MemberFactory, ProgramFactory, StaffFactory


@pytest.fixture
def program(db):
    return ProgramFactory()


@pytest.fixture
def member(program):
    return MemberFactory(program=program)


@pytest.fixture
def other_member(program):
    return MemberFactory(program=program)


@pytest.fixture
def staff(db):
    return StaffFactory()
