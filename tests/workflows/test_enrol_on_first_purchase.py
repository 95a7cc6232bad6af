"""Enrol on first purchase: `POST /activities` with an unknown `external_id` enrols the
customer in the activity's transaction when the program says so (`enrol_on_first_purchase`)."""

import pytest

from loyalty.models import Activity, LedgerEntry, Member
from tests.api.conftest import client_with, make_key
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.loyalty.test_concurrency import run_together
from workflows import services

from .factories import EarningRuleFactory
from .test_api import post, purchase_body

ACTIVITIES = "/api/v1/activities"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def api_client(program):
    return client_with(make_key(program)[1])


@pytest.fixture
def rules(program):
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None)


def new_customer_purchase(**fields):
    return purchase_body(external_id="shop-new-1", items=[], **fields)


@pytest.mark.django_db
def test_a_new_program_enrols_on_first_purchase_by_default():
    assert ProgramFactory().enrol_on_first_purchase is True


@pytest.mark.django_db
def test_a_first_purchase_enrols_the_customer_with_the_given_profile_and_earns(api_client, program, rules):
    body = new_customer_purchase(email="New.Customer@Example.com", first_name="Nina", last_name="New")
    response = post(api_client, ACTIVITIES, body)
    assert response.status_code == 201, response.json()
    member = Member.objects.get(program=program, external_id="shop-new-1")
    assert (member.email, member.first_name, member.last_name) == ("new.customer@example.com", "Nina", "New")
    assert member.enrollment_channel == Member.Channel.ONLINE  # the purchase's channel
    assert response.json()["member_id"] == member.pk
    assert response.json()["points_awarded"] == 42
    member.refresh_from_db()
    assert member.available == 42


@pytest.mark.django_db
def test_a_purchase_without_a_channel_enrols_through_the_api_channel(api_client, program, rules):
    response = post(api_client, ACTIVITIES, new_customer_purchase(channel=""))
    assert response.status_code == 201, response.json()
    assert Member.objects.get(external_id="shop-new-1").enrollment_channel == Member.Channel.API


@pytest.mark.django_db
def test_the_profile_fields_do_not_change_an_existing_member(api_client, program, member, rules):
    body = purchase_body(external_id=member.external_id, email="other@example.com", first_name="Zed", items=[])
    response = post(api_client, ACTIVITIES, body)
    assert response.status_code == 201, response.json()
    member.refresh_from_db()
    assert member.email != "other@example.com"
    assert member.first_name != "Zed"
    assert Member.objects.filter(program=program).count() == 1


@pytest.mark.django_db
def test_a_program_that_does_not_enrol_on_purchase_still_answers_404(api_client, program, rules):
    program.enrol_on_first_purchase = False
    program.save(update_fields=["enrol_on_first_purchase"])
    response = post(api_client, ACTIVITIES, new_customer_purchase())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "member_not_found"
    assert not Member.objects.filter(program=program).exists()


@pytest.mark.django_db
def test_other_activity_types_of_an_unknown_customer_are_404_and_enrol_nobody(api_client, program):
    response = post(api_client, ACTIVITIES, {"type": "store_visit", "external_id": "shop-new-1"})
    assert response.status_code == 404
    assert not Member.objects.filter(program=program).exists()


@pytest.mark.django_db
def test_an_unknown_member_id_is_still_404(api_client, program):
    response = post(api_client, ACTIVITIES, purchase_body(member_id=999999, items=[]))
    assert response.status_code == 404
    assert not Member.objects.filter(program=program).exists()


@pytest.mark.django_db
def test_the_profile_fields_need_an_external_id(api_client, program, member):
    response = post(api_client, ACTIVITIES, purchase_body(member_id=member.pk, email="x@example.com", items=[]))
    assert response.status_code == 400
    assert "email" in response.json()["error"]["details"]


@pytest.mark.django_db
def test_a_first_purchase_with_another_members_email_is_409_and_enrols_nobody(api_client, program, member, rules):
    response = post(api_client, ACTIVITIES, new_customer_purchase(email=member.email.upper()))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "duplicate_email"
    assert not Member.objects.filter(external_id="shop-new-1").exists()
    assert not Activity.objects.exists()


@pytest.mark.django_db
def test_a_refused_purchase_enrols_nobody(api_client, program, member, rules):
    post(api_client, ACTIVITIES, purchase_body(external_id=member.external_id, items=[]), key="first")
    # The same order again, now for a new customer: 409, and the enrolment is undone with it.
    response = post(api_client, ACTIVITIES, new_customer_purchase(), key="second")
    assert response.status_code == 409
    assert not Member.objects.filter(external_id="shop-new-1").exists()


@pytest.mark.django_db
def test_the_signup_bonus_is_paid_to_a_member_enrolled_by_a_purchase(
    api_client, program, rules, django_capture_on_commit_callbacks
):
    EarningRuleFactory(program=program, name="Welcome", trigger="signup", kind="fixed", points=100)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, ACTIVITIES, new_customer_purchase())
    assert response.status_code == 201, response.json()
    member = Member.objects.get(external_id="shop-new-1")
    assert sorted(LedgerEntry.objects.filter(member=member).values_list("reason", "points")) == [
        ("Points per euro", 42),
        ("Welcome", 100),
    ]
    assert member.cards.count() == 1  # the digital card of every new member


@pytest.mark.django_db
def test_the_service_enrols_and_reports_in_one_transaction(program, rules, when):
    customer = services.NewCustomer(external_id="svc-1", email="svc@example.com")
    result = services.activity_report(
        program=program, customer=customer, type="purchase", occurred_at=when, order_id="S-1", amount=10
    )
    assert result.activity.member.external_id == "svc-1"
    assert result.points == 10


@pytest.mark.django_db
def test_the_openapi_schema_documents_the_new_customer_fields(api_client):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    names = [n for n in schema["components"]["schemas"] if "ActivityReport" in n]
    properties = {p for n in names for p in schema["components"]["schemas"][n].get("properties", {})}
    assert {"email", "first_name", "last_name"} <= properties


# -- concurrency: the unique external id index decides -------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_twenty_concurrent_first_purchases_enrol_one_member_with_twenty_activities():
    program = ProgramFactory(timezone="Europe/Paris", earn_rate=1, expiry_days=None)
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None)
    secret = make_key(program)[1]

    def buy(i: int) -> int:
        body = new_customer_purchase(order_id=f"W-{i}", amount="10.00", email="race@example.com")
        return post(client_with(secret), ACTIVITIES, body, key=f"k-{i}").status_code

    results = run_together(20, buy)
    assert results == [("ok", 201)] * 20, results
    member = Member.objects.get(program=program)
    assert member.external_id == "shop-new-1"
    assert Activity.objects.filter(member=member, type="purchase").count() == 20
    assert member.available == 200
    assert sum(LedgerEntry.objects.filter(member=member).values_list("points", flat=True)) == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_twenty_concurrent_first_purchases_of_one_order_record_one_activity():
    program = ProgramFactory(timezone="Europe/Paris", earn_rate=1, expiry_days=None)
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None)
    secret = make_key(program)[1]

    def buy(i: int) -> int:
        body = new_customer_purchase(order_id="W-same", amount="10.00")
        return post(client_with(secret), ACTIVITIES, body, key=f"k-{i}").status_code

    results = run_together(20, buy)
    assert sorted(results) == [("ok", 201)] + [("ok", 409)] * 19, results
    member = Member.objects.get(program=program)
    assert Activity.objects.filter(program=program).count() == 1
    assert member.available == 10


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_member_enrolled_meanwhile_by_post_members_is_found():
    program = ProgramFactory(timezone="Europe/Paris", earn_rate=1, expiry_days=None)
    MemberFactory(program=program, external_id="shop-new-1")
    secret = make_key(program)[1]
    response = post(client_with(secret), ACTIVITIES, new_customer_purchase(order_id="W-9"), key="k")
    assert response.status_code == 201
    assert Member.objects.filter(program=program).count() == 1
