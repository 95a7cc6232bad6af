"""Reward and redemption endpoints of the REST API (docs/api.md): the catalog, redeeming a reward
for a coupon, and a coupon's state, use and cancellation. One class per operation on
`loyalty.api.views.ProgramApi` (key, scopes, error envelope, idempotency, pagination)."""

from __future__ import annotations

from typing import Any

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from loyalty.api.errors import error_responses
from loyalty.api.idempotency import idempotency_key
from loyalty.api.member_data import BalanceSerializer, ReadScopedSerializer
from loyalty.api.output import balance_data, datetime_data, decimal_data
from loyalty.api.pagination import ApiCursorPagination
from loyalty.api.parsing import parse_input
from loyalty.api.references import MemberReferenceSerializer, member_from_reference
from loyalty.api.views import ProgramApi

from . import selectors, services
from .errors import CouponNotFound, RewardNotFound
from .models import Redemption, Reward


class RewardPagination(ApiCursorPagination):
    ordering = ("position", "id")


class TierRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class RewardSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    image = serializers.SerializerMethodField()
    kind = serializers.ChoiceField(choices=Reward.Kind.choices)
    value = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    sku = serializers.CharField(allow_blank=True)
    cost_points = serializers.IntegerField(allow_null=True)
    points_step = serializers.IntegerField(allow_null=True)
    points_min = serializers.IntegerField(allow_null=True)
    points_max = serializers.IntegerField(allow_null=True)
    min_tier = TierRefSerializer(allow_null=True)
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    available = serializers.SerializerMethodField()
    stock_left = serializers.SerializerMethodField()

    def get_image(self, reward: Reward) -> str | None:
        return reward.image.url if reward.image else None

    def get_available(self, reward: Reward) -> bool:
        return reward.stock is None or reward.issued_count < reward.stock

    def get_stock_left(self, reward: Reward) -> int | None:
        return None if reward.stock is None else max(0, reward.stock - reward.issued_count)


class CouponSerializer(serializers.Serializer):
    code = serializers.CharField()
    status = serializers.ChoiceField(choices=Redemption.Status.choices)
    reward = serializers.SerializerMethodField()
    member_id = serializers.IntegerField()
    points = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Reward.Kind.choices)
    value = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True)
    sku = serializers.CharField(allow_blank=True)
    issued_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    used_at = serializers.DateTimeField(allow_null=True)
    order_id = serializers.CharField(allow_blank=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)

    def get_reward(self, redemption: Redemption) -> dict[str, Any]:
        return {"id": redemption.reward_id, "name": redemption.reward.name}


_COUPON_STATUS = serializers.ChoiceField(choices=Redemption.Status.choices)
_COUPON_KIND = serializers.ChoiceField(choices=Reward.Kind.choices)
_COUPON_VALUE = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True)


def coupon_data(redemption: Redemption) -> dict[str, Any]:
    """`CouponSerializer`'s answer, as a dict (loyalty/api/output.py)."""
    return {
        "code": str(redemption.code),
        "status": _COUPON_STATUS.to_representation(redemption.status),
        "reward": {"id": redemption.reward_id, "name": redemption.reward.name},
        "member_id": int(redemption.member_id),
        "points": int(redemption.points),
        "kind": _COUPON_KIND.to_representation(redemption.kind),
        "value": decimal_data(_COUPON_VALUE, redemption.value),
        "sku": str(redemption.sku),
        "issued_at": datetime_data(redemption.issued_at),
        "expires_at": datetime_data(redemption.expires_at),
        "used_at": datetime_data(redemption.used_at),
        "order_id": str(redemption.order_id),
        "cancelled_at": datetime_data(redemption.cancelled_at),
    }


class RewardListApi(ProgramApi):
    """The active catalog, in catalog order, with availability (`available`: in stock)."""

    pagination_class = RewardPagination

    @extend_schema(summary="List rewards", responses={200: RewardSerializer(many=True), **error_responses(400)})
    def get(self, request: Request) -> Response:
        return self.paginated_response(selectors.catalog(program=self.program, now=timezone.now()), RewardSerializer)


class RedemptionCreateApi(ProgramApi):
    """Spend a member's points on a reward and issue a coupon. For a reward of kind
    `points_for_amount`, `points` (a multiple of its step, within its minimum and maximum)
    says how many points to spend. Refusals: 404 member/reward, 422 `insufficient_points`,
    `reward_unavailable` (details.reason: inactive, not_started, ended, out_of_stock, tier,
    limit_reached), `below_minimum_redemption`, `member_blocked`; 400 invalid points."""

    idempotency_required = True

    class InputSerializer(MemberReferenceSerializer):
        reward_id = serializers.IntegerField(min_value=1)
        points = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False)

    class OutputSerializer(ReadScopedSerializer, CouponSerializer):
        read_scope_fields = ("balance",)  # the member's balance: for a key with the `read` scope only

        balance = BalanceSerializer()

    @extend_schema(
        summary="Redeem a reward",
        request=InputSerializer,
        responses={201: OpenApiResponse(OutputSerializer), **error_responses(400, 404, 409, 422)},
    )
    def post(self, request: Request) -> Response:
        data = parse_input(self.InputSerializer, request, program=self.program)
        member = member_from_reference(program=self.program, reference=data)
        reward = selectors.reward_of_program(program=self.program, reward_id=data["reward_id"])
        if reward is None:
            raise RewardNotFound("No such reward in this program.", reward_id=data["reward_id"])
        result = services.reward_redeem(
            program=self.program,
            member=member,
            reward=reward,
            points=data.get("points"),
            idempotency_key=idempotency_key(request),
            # The idempotency layer's transaction, rolled back whole on any exception; the
            # reward was read just above in it.
            join_caller=True,
        )
        body = coupon_data(result.redemption)  # CouponSerializer's answer, built directly
        if self.shows_member_data:
            body["balance"] = balance_data(result.balance)
        return Response(body, status=201)


def _coupon_or_404(api: ProgramApi, code: str) -> Redemption:
    coupon = selectors.coupon(program=api.program, code=code)
    if coupon is None:
        raise CouponNotFound("No such coupon in this program.", code=code)
    return coupon


class RedemptionDetailApi(ProgramApi):
    """A coupon's state (`issued`, `used`, `cancelled`, `expired`) and what it gives."""

    @extend_schema(summary="Look up a coupon", responses={200: CouponSerializer, **error_responses(404)})
    def get(self, request: Request, code: str) -> Response:
        return Response(CouponSerializer(_coupon_or_404(self, code)).data)


class RedemptionUseApi(ProgramApi):
    """The shop applied the coupon to `order_id`. Used already: 409 `coupon_already_used`;
    cancelled or expired: 422 `coupon_not_usable`."""

    idempotency_required = True

    class InputSerializer(serializers.Serializer):
        order_id = serializers.CharField(max_length=255)

    @extend_schema(
        summary="Use a coupon",
        request=InputSerializer,
        responses={200: CouponSerializer, **error_responses(400, 404, 409, 422)},
    )
    def post(self, request: Request, code: str) -> Response:
        data = parse_input(self.InputSerializer, request)
        coupon = services.redemption_use(program=self.program, code=code, order_id=data["order_id"])
        return Response(coupon_data(coupon))  # CouponSerializer's answer, built directly


class RedemptionCancelApi(ProgramApi):
    """Cancel an unused coupon: the points come back with their original expiry. Used: 409
    `coupon_already_used`; cancelled or expired: 422 `coupon_not_usable`."""

    idempotency_required = True

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    @extend_schema(
        summary="Cancel a coupon",
        request=InputSerializer,
        responses={200: CouponSerializer, **error_responses(400, 404, 409, 422)},
    )
    def post(self, request: Request, code: str) -> Response:
        data = parse_input(self.InputSerializer, request)
        coupon = services.redemption_cancel(program=self.program, code=code, reason=data["reason"])
        return Response(CouponSerializer(coupon).data)


urlpatterns = [
    path("rewards", RewardListApi.as_view(), name="reward-list"),
    path("redemptions", RedemptionCreateApi.as_view(), name="redemption-create"),
    path("redemptions/<str:code>", RedemptionDetailApi.as_view(), name="redemption-detail"),
    path("redemptions/<str:code>/use", RedemptionUseApi.as_view(), name="redemption-use"),
    path("redemptions/<str:code>/cancel", RedemptionCancelApi.as_view(), name="redemption-cancel"),
]
