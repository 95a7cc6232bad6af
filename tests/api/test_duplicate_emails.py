"""The API refuses a second member with one email in a program: 409 `duplicate_email`."""

import pytest

from loyalty.models import Member
from tests.loyalty.factories import MemberFactory

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/members"


def test_enrolling_a_new_customer_with_a_members_email_is_409(api_client, program, member, assert_matches_schema):
    response = api_client.post(MEMBERS, {"external_id": "new-1", "email": member.email.upper()}, format="json")
    assert response.status_code == 409
    error = assert_matches_schema(response, MEMBERS, "post")["error"]
    assert error["code"] == "duplicate_email"
    assert error["details"]["fields"] == {"email": ["A member of this program already has this email."]}
    assert not Member.objects.filter(external_id="new-1").exists()


def test_enrolling_a_known_external_id_with_its_email_returns_the_member(api_client, member):
    response = api_client.post(MEMBERS, {"external_id": member.external_id, "email": member.email}, format="json")
    assert response.status_code == 200
    assert response.json()["id"] == member.pk


def test_enrolling_without_external_id_with_a_members_email_is_409(api_client, member):
    response = api_client.post(MEMBERS, {"email": member.email}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "duplicate_email"


def test_changing_a_members_email_to_anothers_is_409(api_client, program, member):
    other = MemberFactory(program=program)
    response = api_client.patch(f"{MEMBERS}/{other.pk}", {"email": member.email}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "duplicate_email"
    other.refresh_from_db()
    assert other.email != member.email


def test_a_refused_email_change_changes_nothing_else(api_client, program, member):
    other = MemberFactory(program=program)
    response = api_client.patch(
        f"{MEMBERS}/{other.pk}", {"email": member.email, "first_name": "Changed", "status": "blocked"}, format="json"
    )
    assert response.status_code == 409
    other.refresh_from_db()
    assert (other.first_name, other.status) != ("Changed", "blocked")
