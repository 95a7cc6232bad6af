"""The API-key services (loyalty/services/api_keys.py) and their callers, the admin and the
`create_api_key` command."""

import datetime as dt
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from loyalty.models import ProgramAPIKey
from loyalty.services import api_key_create, api_key_revoke, api_key_update
from tests.loyalty.factories import ProgramFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def program():
    return ProgramFactory()


def test_api_key_create_stores_only_the_hash_and_returns_the_secret_once(program):
    api_key, secret = api_key_create(program=program, name="till 1")
    stored = ProgramAPIKey.objects.get(pk=api_key.pk)
    assert secret.startswith(stored.prefix + ".")
    assert secret.split(".", 1)[1] not in stored.hashed_key
    assert stored.is_valid(secret)
    assert stored.scopes == ["read", "write"]  # the default: adjust must be asked for


def test_api_key_create_orders_and_deduplicates_the_scopes(program):
    api_key, _ = api_key_create(program=program, name="x", scopes=["adjust", "read", "adjust"])
    assert api_key.scopes == ["read", "adjust"]


def test_api_key_create_refuses_an_unknown_scope_and_saves_nothing(program):
    with pytest.raises(ValidationError):
        api_key_create(program=program, name="x", scopes=["read", "delete"])
    assert not ProgramAPIKey.objects.exists()


def test_api_key_create_refuses_a_name_too_long(program):
    with pytest.raises(ValidationError):
        api_key_create(program=program, name="n" * 51)
    assert not ProgramAPIKey.objects.exists()


def test_api_key_create_keeps_the_expiry(program):
    later = timezone.now() + dt.timedelta(days=30)
    api_key, _ = api_key_create(program=program, name="x", expiry_date=later)
    assert ProgramAPIKey.objects.get(pk=api_key.pk).expiry_date == later


def test_api_key_create_takes_keyword_arguments_only(program):
    with pytest.raises(TypeError):
        api_key_create(program, "x")  # type: ignore[misc]


def test_api_key_revoke_revokes_and_counts_only_the_keys_it_revoked(program):
    first, _ = api_key_create(program=program, name="a")
    second, _ = api_key_create(program=program, name="b")
    kept, _ = api_key_create(program=program, name="c")
    assert api_key_revoke(api_key_ids=[first.pk]) == 1
    assert api_key_revoke(api_key_ids=[first.pk, second.pk]) == 1
    assert set(ProgramAPIKey.objects.filter(revoked=True).values_list("pk", flat=True)) == {first.pk, second.pk}
    assert not ProgramAPIKey.objects.get(pk=kept.pk).revoked


def test_api_key_update_changes_name_and_scopes(program):
    api_key, secret = api_key_create(program=program, name="a")
    api_key_update(api_key=api_key, name="b", scopes=["write", "read", "adjust"])
    stored = ProgramAPIKey.objects.get(pk=api_key.pk)
    assert (stored.name, stored.scopes) == ("b", ["read", "write", "adjust"])
    assert stored.is_valid(secret)


def test_api_key_update_cannot_unrevoke_a_key(program):
    api_key, _ = api_key_create(program=program, name="a")
    api_key_revoke(api_key_ids=[api_key.pk])
    api_key.refresh_from_db()
    api_key_update(api_key=api_key, revoked=False, scopes=["read", "write", "adjust"])
    stored = ProgramAPIKey.objects.get(pk=api_key.pk)
    assert stored.revoked
    assert stored.scopes == ["read", "write"]


def test_api_key_update_refuses_other_fields(program):
    api_key, _ = api_key_create(program=program, name="a")
    with pytest.raises(TypeError):
        api_key_update(api_key=api_key, program=ProgramFactory())


def test_the_command_creates_the_key_through_the_service(program):
    out, err = StringIO(), StringIO()
    call_command("create_api_key", program.slug, "pos", "--scope", "adjust", "--scope", "read", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    api_key = ProgramAPIKey.objects.get(name="pos")
    assert api_key.is_valid(secret)
    assert api_key.scopes == ["read", "adjust"]


def test_the_admin_change_form_updates_the_key_and_revokes_it(admin_client, program):
    api_key, secret = api_key_create(program=program, name="a")
    response = admin_client.post(
        f"/admin/loyalty/programapikey/{api_key.pk}/change/",
        {"name": "renamed", "scopes": ["read"], "expiry_date_0": "", "expiry_date_1": "", "revoked": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = ProgramAPIKey.objects.get(pk=api_key.pk)
    assert (stored.name, stored.scopes, stored.revoked) == ("renamed", ["read"], True)
    assert stored.is_valid(secret)
