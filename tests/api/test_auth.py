import datetime as dt
import io
import re

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from loyalty.models import ProgramAPIKey

from .conftest import assign_url, card_url, client_with, make_key

pytestmark = pytest.mark.django_db


def assert_401(response, code):
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.json()["error"]["code"] == code


def test_a_request_without_a_key_is_401_with_www_authenticate(anonymous_client, unassigned_card):
    assert_401(anonymous_client.get(card_url(unassigned_card.number)), "not_authenticated")


def test_another_authorization_scheme_is_401(anonymous_client, unassigned_card):
    anonymous_client.credentials(HTTP_AUTHORIZATION="Bearer abc.def")
    assert_401(anonymous_client.get(card_url(unassigned_card.number)), "not_authenticated")


@pytest.mark.parametrize("secret", ["garbage", "abcdefgh.wrongsecret", "", "\x00\x01.x", "a" * 5000])
def test_an_unknown_key_is_401(secret, unassigned_card):
    response = client_with(secret).get(card_url(unassigned_card.number))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


def test_a_real_prefix_with_a_wrong_secret_is_401(api_key, unassigned_card):
    prefix = api_key[0].prefix
    assert_401(client_with(f"{prefix}.{'x' * 32}").get(card_url(unassigned_card.number)), "invalid_api_key")


def test_a_revoked_key_is_401(revoked_key, unassigned_card):
    assert_401(client_with(revoked_key).get(card_url(unassigned_card.number)), "api_key_revoked")


def test_an_expired_key_is_401(expired_key, unassigned_card):
    assert_401(client_with(expired_key).get(card_url(unassigned_card.number)), "api_key_expired")


def test_a_key_of_an_inactive_program_is_401(api_client, program, unassigned_card):
    program.is_active = False
    program.save()
    assert_401(api_client.get(card_url(unassigned_card.number)), "program_inactive")


def test_a_valid_key_authenticates_and_sets_the_program(api_client, unassigned_card, program):
    response = api_client.get(card_url(unassigned_card.number))
    assert response.status_code == 200
    assert response.json()["program"] == program.slug


def test_a_key_expiring_later_still_works(program, unassigned_card):
    _key, secret = make_key(program, expiry_date=timezone.now() + dt.timedelta(days=1))
    assert client_with(secret).get(card_url(unassigned_card.number)).status_code == 200


def test_a_read_only_key_cannot_post(read_only_client, unassigned_card, member):
    response = read_only_client.post(assign_url(unassigned_card.number), {"member_id": member.pk}, format="json")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope"
    assert error["details"] == {"required_scope": "write", "key_scopes": ["read"]}
    unassigned_card.refresh_from_db()
    assert unassigned_card.member_id is None


def test_a_write_only_key_cannot_read(write_only_client, unassigned_card):
    response = write_only_client.get(card_url(unassigned_card.number))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"


def test_a_key_never_sees_another_programs_card(api_client, other_program_card):
    response = api_client.get(card_url(other_program_card.number))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "card_not_found"


def test_a_key_cannot_assign_another_programs_card(api_client, other_program_card, member):
    response = api_client.post(assign_url(other_program_card.number), {"member_id": member.pk}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "card_not_found"
    other_program_card.refresh_from_db()
    assert other_program_card.member_id is None


def test_a_key_cannot_assign_a_card_to_another_programs_member(api_client, unassigned_card, other_program_member):
    for reference in ({"member_id": other_program_member.pk}, {"external_id": other_program_member.external_id}):
        response = api_client.post(assign_url(unassigned_card.number), reference, format="json")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "member_not_found"
    unassigned_card.refresh_from_db()
    assert unassigned_card.member_id is None


# --- create_api_key ---------------------------------------------------------------------------


def run_create_api_key(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_create_api_key_prints_a_working_key_once(program, unassigned_card):
    secret, info = run_create_api_key(program.slug, "webshop")
    assert re.fullmatch(r"[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}", secret)
    api_key = ProgramAPIKey.objects.get(program=program, name="webshop")
    assert api_key.scopes == ["read", "write"]
    assert secret not in api_key.hashed_key
    assert secret not in info
    assert api_key.prefix in info
    assert client_with(secret).get(card_url(unassigned_card.number)).status_code == 200


def test_create_api_key_takes_scopes_and_an_expiry(program):
    secret, _info = run_create_api_key(
        program.slug, "pos", "--scope", "adjust", "--scope", "read", "--scope", "read", "--expires", "2099-01-31"
    )
    api_key = ProgramAPIKey.objects.get_from_key(secret)
    assert api_key.scopes == ["read", "adjust"]
    assert api_key.expiry_date == dt.datetime(2099, 1, 31, tzinfo=program.tz)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-program", "x"], "No program"),
        (["{slug}", "x", "--expires", "2001-01-01T00:00:00+00:00"], "in the past"),
        (["{slug}", "x", "--expires", "tomorrow"], "ISO 8601"),
        (["{slug}", "x" * 51], "name"),
    ],
)
def test_create_api_key_refuses_bad_arguments(program, args, message):
    with pytest.raises(CommandError, match=message):
        run_create_api_key(*[a.format(slug=program.slug) for a in args])
    assert not ProgramAPIKey.objects.exists()


# --- admin ------------------------------------------------------------------------------------


def test_the_admin_add_view_shows_the_new_key_once(admin_client, program, unassigned_card):
    response = admin_client.post(
        "/admin/loyalty/programapikey/add/",
        {"program": program.pk, "name": "shop", "scopes": ["read"], "expiry_date_0": "", "expiry_date_1": ""},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    match = re.search(r"is: ([A-Za-z0-9]{8}\.[A-Za-z0-9]{32})", page)
    assert match, page
    secret = match.group(1)
    api_key = ProgramAPIKey.objects.get(name="shop")
    assert api_key.scopes == ["read"]
    assert client_with(secret).get(card_url(unassigned_card.number)).status_code == 200
    again = admin_client.get(f"/admin/loyalty/programapikey/{api_key.pk}/change/").content.decode()
    assert secret not in again
    assert secret not in admin_client.get("/admin/loyalty/programapikey/").content.decode()


def test_the_admin_revoke_action_revokes(admin_client, api_key, unassigned_card):
    response = admin_client.post(
        "/admin/loyalty/programapikey/",
        {"action": "revoke_keys", "_selected_action": [api_key[0].pk]},
        follow=True,
    )
    assert response.status_code == 200
    api_key[0].refresh_from_db()
    assert api_key[0].revoked
    assert client_with(api_key[1]).get(card_url(unassigned_card.number)).status_code == 401


def test_an_unknown_scope_is_refused_when_issuing_a_key(program):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        make_key(program, scopes=["read", "delete"])
    assert not ProgramAPIKey.objects.exists()


@pytest.mark.urls("tests.api.urls")
def test_adjustments_need_the_adjust_scope(api_client, program):
    response = api_client.post("/api/v1/test/adjust", {})
    assert response.status_code == 403
    assert response.json()["error"]["details"]["required_scope"] == "adjust"
    assert client_with(make_key(program, scopes=["adjust"])[1]).post("/api/v1/test/adjust", {}).status_code == 201
