"""The hot paths build their answers as dicts (loyalty/api/output.py); their serializers stay
the contract. Each builder must give exactly what its serializer gives, for every kind of
value (dates in and out of UTC, decimals, empty values), with and without the `read` scope."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from loyalty.api.output import balance_data
from loyalty.models import ProgramAPIKey
from loyalty.services import Balance, points_earn
from rewards import services as rewards_services
from rewards.api import CouponSerializer, RedemptionCreateApi, coupon_data
from rewards.models import Reward
from tests.rewards.factories import RewardFactory
from workflows import services as workflows_services
from workflows.api import ActivityReportApi, activity_result_data

from .conftest import make_key

pytestmark = pytest.mark.django_db


def _request_with(program, scopes):
    request = APIRequestFactory().post("/api/v1/activities")
    request.auth = ProgramAPIKey.objects.get(pk=make_key(program, scopes=scopes)[0].pk)
    return request


@pytest.fixture
def activity_result(program, member):
    workflows_services.rule_create(program=program, name="Base", trigger="purchase", kind="per_amount")
    workflows_services.rule_create(
        program=program, name="Visit bonus", trigger="purchase", kind="fixed", points=Decimal(50)
    )
    return workflows_services.activity_report(
        program=program,
        member=member,
        type="purchase",
        occurred_at=timezone.now() - dt.timedelta(hours=3),
        order_id="O-1",
        amount=Decimal("40.50"),
        items=[{"sku": "S", "category": "c", "quantity": 1, "unit_price": "40.50"}],
        idempotency_key="k-1",
    )


@pytest.mark.parametrize("scopes", [("read", "write"), ("write",)])
def test_an_activity_answer_is_its_serializers(activity_result, program, scopes):
    assert len(activity_result.entries) == 2
    request = _request_with(program, scopes)
    expected = ActivityReportApi.OutputSerializer(activity_result, context={"request": request}).data
    built = activity_result_data(activity_result, shows_member_data="read" in scopes)
    assert built == expected
    assert list(built) == list(expected)
    assert ("balance" in built) == ("read" in scopes)


def test_an_activity_answer_with_pending_points_and_no_expiry_is_its_serializers(program, member):
    program.pending_days = 14
    program.expiry_days = None
    program.save()
    workflows_services.rule_create(program=program, name="Base", trigger="purchase", kind="per_amount")
    result = workflows_services.activity_report(
        program=program, member=member, type="purchase", occurred_at=timezone.now(), order_id="O-2", amount=Decimal(9)
    )
    request = _request_with(program, ("read", "write"))
    expected = ActivityReportApi.OutputSerializer(result, context={"request": request}).data
    assert activity_result_data(result, shows_member_data=True) == expected
    assert expected["entries"][0]["available_at"] is not None
    assert expected["entries"][0]["expires_at"] is None


def test_an_activity_answer_without_awards_is_its_serializers(program, member):
    result = workflows_services.activity_report(
        program=program, member=member, type="store_visit", occurred_at=timezone.now()
    )
    request = _request_with(program, ("read", "write"))
    expected = ActivityReportApi.OutputSerializer(result, context={"request": request}).data
    assert activity_result_data(result, shows_member_data=True) == expected
    assert expected["awards"] == []
    assert expected["points_awarded"] == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": Reward.Kind.AMOUNT_OFF, "value": Decimal("5.5")},
        {"kind": Reward.Kind.FREE_SHIPPING, "value": None},
        {"kind": Reward.Kind.FREE_PRODUCT, "value": None, "sku": "SKU-9"},
    ],
)
def test_a_coupon_answer_is_its_serializers_through_its_life(program, member, fields):
    points_earn(program=program, member_id=member.pk, points=5_000)
    reward = RewardFactory(program=program, cost_points=100, **fields)
    coupon = rewards_services.reward_redeem(program=program, member=member, reward=reward).redemption
    assert coupon_data(coupon) == CouponSerializer(coupon).data
    used = rewards_services.redemption_use(program=program, code=coupon.code, order_id="O-9")
    assert used.used_at is not None
    assert coupon_data(used) == CouponSerializer(used).data
    other = rewards_services.reward_redeem(program=program, member=member, reward=reward).redemption
    cancelled = rewards_services.redemption_cancel(program=program, code=other.code)
    assert coupon_data(cancelled) == CouponSerializer(cancelled).data
    assert list(coupon_data(cancelled)) == list(CouponSerializer(cancelled).data)


def test_a_balance_answer_is_its_serializers():
    balance = Balance(available=-5, pending=10, lifetime_earned=100, redeemed=3, expired=0)
    expected = RedemptionCreateApi.OutputSerializer().fields["balance"].to_representation(balance)
    assert balance_data(balance) == expected


def test_dates_render_in_the_current_time_zone_as_the_serializers_do(program, member, settings):
    settings.TIME_ZONE = "Europe/Paris"
    timezone.activate("Europe/Paris")
    try:
        test_a_coupon_answer_is_its_serializers_through_its_life(
            program, member, {"kind": Reward.Kind.AMOUNT_OFF, "value": Decimal("1.2345")}
        )
    finally:
        timezone.deactivate()
