import pytest

from cards.models import Card
from tests.cards.factories import CardFactory

from .conftest import assign_url, card_url, wrong_check_digit

pytestmark = pytest.mark.django_db


def test_an_unassigned_card_has_no_member(api_client, unassigned_card, program):
    response = api_client.get(card_url(unassigned_card.number))
    assert response.status_code == 200
    assert response.json() == {
        "number": unassigned_card.number,
        "status": "unassigned",
        "kind": "physical",
        "program": program.slug,
        "member": None,
    }


def test_an_active_card_shows_its_member_and_balance(api_client, active_card, member_with_points):
    response = api_client.get(card_url(active_card.number))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "active"
    assert body["member"] == {
        "id": member_with_points.pk,
        "external_id": member_with_points.external_id,
        "email": member_with_points.email,
        "first_name": member_with_points.first_name,
        "last_name": member_with_points.last_name,
        "status": "active",
        "balance": {"available": 120, "pending": 0, "lifetime_earned": 120, "redeemed": 0, "expired": 0},
    }


def test_the_lookup_is_two_indexed_queries(api_client, active_card, django_assert_num_queries):
    with django_assert_num_queries(2):  # the API key (by prefix, program joined), the card (member joined)
        assert api_client.get(card_url(active_card.number)).status_code == 200


def test_a_blocked_card_is_shown_as_blocked(api_client, blocked_card):
    response = api_client.get(card_url(blocked_card.number))
    assert response.status_code == 200
    assert response.json()["status"] == "blocked"


def test_the_lookup_ignores_spaces_and_dashes(api_client, unassigned_card):
    n = unassigned_card.number
    response = api_client.get(card_url(f"{n[:4]}%20{n[4:8]}-{n[8:]}"))
    assert response.status_code == 200
    assert response.json()["number"] == n


def test_a_wrong_check_digit_is_400(api_client, unassigned_card, django_assert_num_queries):
    with django_assert_num_queries(1):  # the API key only: a mistyped number never reaches the cards table
        response = api_client.get(card_url(wrong_check_digit(unassigned_card.number)))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_card_number"


def test_an_unknown_card_is_404(api_client, program, unassigned_card):
    other = CardFactory.build(program=program).number
    response = api_client.get(card_url(other))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "card_not_found"


@pytest.mark.parametrize("reference", ["member_id", "external_id", "card_number"])
def test_assign_by_each_kind_of_reference(api_client, unassigned_card, active_card, member_with_points, reference):
    value = {
        "member_id": member_with_points.pk,
        "external_id": member_with_points.external_id,
        "card_number": active_card.number,
    }[reference]
    response = api_client.post(assign_url(unassigned_card.number), {reference: value}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "active"
    assert body["member"]["id"] == member_with_points.pk
    assert body["member"]["balance"]["available"] == 120
    unassigned_card.refresh_from_db()
    assert unassigned_card.member_id == member_with_points.pk
    assert unassigned_card.status == Card.Status.ACTIVE


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"member_id", "external_id", "card_number"}),
        ({"member_id": 1, "external_id": "x"}, {"member_id", "external_id"}),
    ],
)
def test_assign_needs_exactly_one_reference(api_client, unassigned_card, body, fields):
    response = api_client.post(assign_url(unassigned_card.number), body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["details"]) == fields


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"member_id": "abc"}, "member_id"),
        ({"member_id": 2**70}, "member_id"),
        ({"member_id": None}, "member_id"),
        ({"external_id": "x" * 300}, "external_id"),
        ({"external_id": "nul\x00byte"}, "external_id"),
        ({"card_number": "1234"}, "card_number"),
    ],
)
def test_a_malformed_reference_is_400_naming_the_field(api_client, unassigned_card, body, field):
    response = api_client.post(assign_url(unassigned_card.number), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_a_card_reference_must_be_an_active_card(api_client, unassigned_card, blocked_card):
    response = api_client.post(assign_url(unassigned_card.number), {"card_number": blocked_card.number}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "member_not_found"


def test_assign_to_an_unknown_member_is_404(api_client, unassigned_card):
    response = api_client.post(assign_url(unassigned_card.number), {"external_id": "nobody"}, format="json")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "member_not_found"
    assert error["details"] == {"external_id": "nobody"}


def test_assigning_an_assigned_card_is_422(api_client, active_card, member):
    response = api_client.post(assign_url(active_card.number), {"member_id": member.pk}, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "card_not_assignable"
    assert error["details"]["status"] == "active"


def test_assigning_a_blocked_card_is_422(api_client, blocked_card, member):
    response = api_client.post(assign_url(blocked_card.number), {"member_id": member.pk}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "card_not_assignable"


def test_assigning_a_mistyped_card_number_is_400(api_client, unassigned_card, member):
    response = api_client.post(
        assign_url(wrong_check_digit(unassigned_card.number)), {"member_id": member.pk}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_card_number"


def test_assigning_an_unknown_card_is_404(api_client, program, member):
    response = api_client.post(
        assign_url(CardFactory.build(program=program).number), {"member_id": member.pk}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "card_not_found"
