"""The review queue in the admin: listed for Support, decided by Owner and Manager only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from tests.loyalty.factories import MemberFactory, StaffFactory
from workflows import fraud, services
from workflows.models import FraudLimits, ReviewHold

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

URL = "/admin/workflows/reviewhold/"


@pytest.fixture
def hold(program):
    EarningRuleFactory(program=program, points=10)
    FraudLimits.objects.create(program=program, is_active=True, max_activities_per_day=0)
    fraud.limits_forget()
    member = MemberFactory(program=program)
    result = services.activity_report(
        program=program,
        member=member,
        type="purchase",
        order_id="A-1",
        amount=Decimal("20"),
        occurred_at=WEDNESDAY_NOON,
        now=WEDNESDAY_NOON,
    )
    yield result.hold
    fraud.limits_forget()


def staff(role):
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=role))
    return user


def test_support_sees_the_queue_without_the_decisions(client, hold):
    client.force_login(staff("Support"))
    response = client.get(f"{URL}?status__exact=pending")
    assert response.status_code == 200
    assert "A-1" in response.content.decode()
    assert "release" not in dict(response.context["cl"].model_admin.get_actions(response.wsgi_request))
    client.post(URL, {"action": "release", "_selected_action": [hold.pk]})
    assert ReviewHold.objects.get(pk=hold.pk).status == "pending"


def test_a_manager_releases_from_the_list(client, hold):
    client.force_login(staff("Manager"))
    response = client.post(f"{URL}?status__exact=pending", {"action": "release", "_selected_action": [hold.pk]})
    assert response.status_code == 302
    assert ReviewHold.objects.get(pk=hold.pk).status == "released"


def test_a_rejection_without_a_reason_asks_again_and_changes_nothing(client, hold):
    client.force_login(staff("Manager"))
    response = client.post(URL, {"action": "reject", "_selected_action": [hold.pk], "apply": "1", "reason": ""})
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert ReviewHold.objects.get(pk=hold.pk).status == "pending"


def test_the_fraud_limits_page_opens(client, program):
    client.force_login(staff("Manager"))
    assert client.get("/admin/workflows/fraudlimits/add/").status_code == 200
