"""Fixtures shared by every test folder. A folder's conftest overrides one only when its tests
need a different state (e.g. tests/tiers' program counts points over a rolling window)."""

import pytest
from django.core.cache import cache

from loyalty.api.auth import forget_verified_keys
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _empty_cache():
    """Rate-limit and PIN-failure counters and the configuration caches live in the cache, the
    API keys a process verified in memory (loyalty/api/auth.py): no test sees another's."""
    cache.clear()
    forget_verified_keys()
    yield
    cache.clear()
    forget_verified_keys()


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
def other_program_member(other_program):
    return MemberFactory(program=other_program)


@pytest.fixture
def staff(db):
    """A staff user with every permission (the admin pages' tests log in as this user)."""
    return StaffFactory(is_superuser=True)
