"""The API keys a web process remembers (loyalty/api/auth.py, API_KEY_CACHE_SECONDS): a change
made in this process takes effect at the next request; one made elsewhere (simulated here with
a bulk UPDATE, which sends no signal) within the cache's seconds, never later. Time is moved
by hand, never waited for."""

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyalty.api import auth
from loyalty.models import Program, ProgramAPIKey
from loyalty.services import api_key_revoke, api_key_update

from .conftest import card_url, client_with, make_key
from .test_auth import assert_401

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """The cache's monotonic clock, moved by the test (`clock.now += seconds`)."""

    class Clock:
        now = 1000.0

    fake = Clock()
    monkeypatch.setattr(auth, "_clock", lambda: fake.now)
    return fake


@pytest.fixture
def keyed(program):
    api_key, secret = make_key(program)
    return api_key, client_with(secret)


def _get(client, card):
    return client.get(card_url(card.number))


def _key_queries(ctx):
    return [q["sql"] for q in ctx.captured_queries if "loyalty_programapikey" in q["sql"]]


def test_a_remembered_key_needs_no_query(keyed, unassigned_card, clock):
    _api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    with CaptureQueriesContext(connection) as ctx:
        assert _get(client, unassigned_card).status_code == 200
    assert _key_queries(ctx) == []


def test_the_key_is_looked_up_again_after_the_cache_seconds(keyed, unassigned_card, clock, settings):
    settings.API_KEY_CACHE_SECONDS = 5
    _api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    clock.now += 5
    with CaptureQueriesContext(connection) as ctx:
        assert _get(client, unassigned_card).status_code == 200
    assert len(_key_queries(ctx)) == 1


def test_a_key_revoked_by_another_process_is_refused_within_the_cache_seconds(keyed, unassigned_card, clock, settings):
    settings.API_KEY_CACHE_SECONDS = 5
    api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    # Another process revokes it: no signal reaches this one.
    ProgramAPIKey.objects.filter(pk=api_key.pk).update(revoked=True)
    clock.now += 4.9
    assert _get(client, unassigned_card).status_code == 200  # the documented window
    clock.now += 0.1
    assert_401(_get(client, unassigned_card), "api_key_revoked")
    assert_401(_get(client, unassigned_card), "api_key_revoked")  # a refused key is not remembered


def test_a_program_deactivated_by_another_process_is_refused_within_the_cache_seconds(
    keyed, program, unassigned_card, clock, settings
):
    settings.API_KEY_CACHE_SECONDS = 5
    _api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    Program.objects.filter(pk=program.pk).update(is_active=False)
    clock.now += 5
    assert_401(_get(client, unassigned_card), "program_inactive")


def test_a_key_revoked_in_this_process_is_refused_at_the_next_request(keyed, unassigned_card, clock):
    api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    assert api_key_revoke(api_key_ids=[api_key.pk]) == 1  # a bulk UPDATE: the service says so
    assert_401(_get(client, unassigned_card), "api_key_revoked")


def test_a_key_revoked_by_its_form_or_update_is_refused_at_the_next_request(keyed, unassigned_card, clock):
    api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    api_key_update(api_key=api_key, revoked=True)
    assert_401(_get(client, unassigned_card), "api_key_revoked")


def test_a_key_deleted_in_this_process_is_refused_at_the_next_request(keyed, unassigned_card, clock):
    api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    api_key.delete()
    assert_401(_get(client, unassigned_card), "invalid_api_key")


def test_a_program_changed_in_this_process_is_seen_at_the_next_request(keyed, program, unassigned_card, clock):
    _api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    program.is_active = False
    program.save()
    assert_401(_get(client, unassigned_card), "program_inactive")


def test_an_expiry_date_is_checked_on_every_request(program, unassigned_card, clock):
    _api_key, secret = make_key(program, expiry_date=timezone.now() + dt.timedelta(minutes=1))
    client = client_with(secret)
    assert _get(client, unassigned_card).status_code == 200
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=2)):
        assert_401(_get(client, unassigned_card), "api_key_expired")


def test_a_wrong_secret_with_a_remembered_prefix_is_refused(keyed, unassigned_card, clock):
    api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    assert_401(client_with(f"{api_key.prefix}.{'x' * 32}").get(card_url(unassigned_card.number)), "invalid_api_key")


def test_zero_seconds_turns_the_cache_off(keyed, unassigned_card, clock, settings):
    settings.API_KEY_CACHE_SECONDS = 0
    api_key, client = keyed
    assert _get(client, unassigned_card).status_code == 200
    ProgramAPIKey.objects.filter(pk=api_key.pk).update(revoked=True)
    assert_401(_get(client, unassigned_card), "api_key_revoked")


def test_requests_get_their_own_copies_of_the_key_and_program(keyed, program):
    api_key, _client = keyed
    digest = "d" * 64
    auth._remember(digest, ProgramAPIKey.objects.select_related("program").get(pk=api_key.pk))
    first, second = auth._remembered(digest), auth._remembered(digest)
    assert first is not second
    assert first.program is not second.program
    first.program.name = "changed by a request"
    assert auth._remembered(digest).program.name == program.name
