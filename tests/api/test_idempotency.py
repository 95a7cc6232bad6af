import threading
import time

import pytest
from django.db import connection

from cards import services as card_services
from cards.models import Card
from loyalty.models import IdempotencyRecord, LedgerEntry

from .conftest import assign_url, client_with, make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def assign_spy(mocker):
    return mocker.patch("cards.api.services.card_assign", side_effect=card_services.card_assign)


def test_a_retry_gets_the_first_response_and_runs_nothing(api_client, unassigned_card, member, assign_spy):
    url, body = assign_url(unassigned_card.number), {"member_id": member.pk}
    first = api_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    second = api_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert assign_spy.call_count == 1
    record = IdempotencyRecord.objects.get(key="http:order-42")
    assert (record.response_status, record.response_body) == (200, first.json())


def test_the_same_key_with_another_body_is_409(api_client, unassigned_card, member, other_program_member):
    url = assign_url(unassigned_card.number)
    api_client.post(url, {"member_id": member.pk}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    response = api_client.post(url, {"external_id": member.external_id}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"


def test_the_same_key_on_another_path_is_409(api_client, program, member):
    from tests.cards.factories import CardFactory

    first, second = CardFactory(program=program), CardFactory(program=program)
    assert api_client.post(assign_url(first.number), {"member_id": member.pk}, HTTP_IDEMPOTENCY_KEY="k").status_code
    response = api_client.post(assign_url(second.number), {"member_id": member.pk}, HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 409
    second.refresh_from_db()
    assert second.member_id is None


def test_keys_are_per_program(api_client, unassigned_card, member, other_program, other_program_card):
    from tests.loyalty.factories import MemberFactory

    other_client = client_with(make_key(other_program)[1])
    other_member = MemberFactory(program=other_program)
    mine = api_client.post(assign_url(unassigned_card.number), {"member_id": member.pk}, HTTP_IDEMPOTENCY_KEY="same")
    theirs = other_client.post(
        assign_url(other_program_card.number), {"member_id": other_member.pk}, HTTP_IDEMPOTENCY_KEY="same"
    )
    assert mine.status_code == theirs.status_code == 200
    assert not theirs.has_header("Idempotent-Replayed")


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "caf\u00e9"])
def test_a_malformed_key_is_400(api_client, unassigned_card, member, key):
    response = api_client.post(
        assign_url(unassigned_card.number), {"member_id": member.pk}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    unassigned_card.refresh_from_db()
    assert unassigned_card.member_id is None


def test_a_255_character_key_is_accepted(api_client, unassigned_card, member):
    key = "k" * 255
    url, body = assign_url(unassigned_card.number), {"member_id": member.pk}
    assert api_client.post(url, body, HTTP_IDEMPOTENCY_KEY=key).status_code == 200
    assert api_client.post(url, body, HTTP_IDEMPOTENCY_KEY=key)["Idempotent-Replayed"] == "true"


def test_a_domain_refusal_is_replayed_too(api_client, active_card, member, assign_spy):
    url, body = assign_url(active_card.number), {"member_id": member.pk}
    first = api_client.post(url, body, HTTP_IDEMPOTENCY_KEY="refused")
    second = api_client.post(url, body, HTTP_IDEMPOTENCY_KEY="refused")
    assert first.status_code == second.status_code == 422
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert assign_spy.call_count == 1


def test_invalid_input_is_not_stored_so_the_key_can_be_reused(api_client, unassigned_card, member):
    url = assign_url(unassigned_card.number)
    assert api_client.post(url, {}, HTTP_IDEMPOTENCY_KEY="fix-me").status_code == 400
    assert not IdempotencyRecord.objects.filter(key="http:fix-me").exists()
    assert api_client.post(url, {"member_id": member.pk}, HTTP_IDEMPOTENCY_KEY="fix-me").status_code == 200


def test_malformed_json_with_a_key_is_400_and_not_stored(api_client, unassigned_card):
    response = api_client.post(
        assign_url(unassigned_card.number), "{oops", content_type="application/json", HTTP_IDEMPOTENCY_KEY="j"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.urls("tests.api.urls")
def test_an_endpoint_marked_idempotent_requires_the_key(api_client, member):
    response = api_client.post("/api/v1/test/earn", {"member_id": member.pk, "points": 5}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_required"
    assert not LedgerEntry.objects.exists()


@pytest.mark.urls("tests.api.urls")
def test_http_and_ledger_keys_do_not_clash(api_client, member):
    body = {"member_id": member.pk, "points": 5}
    first = api_client.post("/api/v1/test/earn", body, format="json", HTTP_IDEMPOTENCY_KEY="purchase-1")
    second = api_client.post("/api/v1/test/earn", body, format="json", HTTP_IDEMPOTENCY_KEY="purchase-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert LedgerEntry.objects.filter(member=member).count() == 1
    keys = set(IdempotencyRecord.objects.values_list("key", flat=True))
    assert keys == {"http:purchase-1", "purchase-1"}  # the HTTP record and the ledger's own


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_execute_once(program, member, unassigned_card, mocker):
    """The second request waits on the unique index while the first is inside its
    transaction, then replays the first response."""
    calls = []
    card_assign = card_services.card_assign

    def slow_assign(**kwargs):
        calls.append(kwargs)
        card = card_assign(**kwargs)
        time.sleep(0.5)  # the other request arrives meanwhile
        return card

    mocker.patch("cards.api.services.card_assign", side_effect=slow_assign)
    secret = make_key(program)[1]
    responses = []

    def post():
        try:
            response = client_with(secret).post(
                assign_url(unassigned_card.number), {"member_id": member.pk}, format="json", HTTP_IDEMPOTENCY_KEY="race"
            )
            responses.append(response)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=30)
    assert len(calls) == 1
    assert [r.status_code for r in responses] == [200, 200]
    assert responses[0].json() == responses[1].json()
    assert sorted(r.has_header("Idempotent-Replayed") for r in responses) == [False, True]
    assert Card.objects.get(pk=unassigned_card.pk).member_id == member.pk
