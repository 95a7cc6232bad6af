"""One purchase that fires several earning rules gives one `points.earned` webhook per endpoint,
with every entry in `entries`."""

import json
from decimal import Decimal

import pytest

from notifications.models import WebhookDelivery
from tests.workflows.factories import EarningRuleFactory
from workflows import services

from .factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db


def test_a_purchase_firing_three_rules_is_one_delivery_per_endpoint(
    program, member, receiver, django_capture_on_commit_callbacks
):
    WebhookEndpointFactory(program=program, url=receiver.url)
    WebhookEndpointFactory(program=program, url=receiver.url + "/second")
    EarningRuleFactory(program=program, name="Per euro", kind="per_amount", points=Decimal(1), priority=3)
    EarningRuleFactory(program=program, name="Visit", kind="fixed", points=Decimal(50), priority=2)
    EarningRuleFactory(program=program, name="Weekend", kind="fixed", points=Decimal(5), priority=1)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.activity_report(
            program=program,
            member=member,
            type="purchase",
            occurred_at=program.start_of_day(program.local_date(member.enrolled_at)),
            order_id="o-1",
            amount=Decimal("30.00"),
            idempotency_key="k-1",
        )
    deliveries = WebhookDelivery.objects.filter(event_type="points.earned")
    assert deliveries.count() == 2
    assert len({d.endpoint_id for d in deliveries}) == 2
    body = json.loads(deliveries.first().body)
    data = body["data"]
    assert [e["id"] for e in data["entries"]] == [e.id for e in result.entries]
    assert [e["reason"] for e in data["entries"]] == ["Per euro", "Visit", "Weekend"]
    assert data["points"] == 85
    assert data["entry"]["id"] == result.entries[0].id
    assert data["balance"]["available"] == 85
