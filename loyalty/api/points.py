"""Loyalty's own endpoints (docs/api.md): manual adjustments (keys with the `adjust` scope) and
transfers between two members of the program. Both (I): an `Idempotency-Key` is required, and
the ledger services get it too, so a posting is exactly-once. The answers carry the members'
balances only for a key with the `read` scope."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from loyalty import services
from loyalty.models import Member

from .auth import Scope
from .errors import error_responses
from .idempotency import idempotency_key
from .member_data import BalanceSerializer, ReadScopedSerializer
from .parsing import parse_input
from .references import MemberReferenceSerializer, member_from_reference
from .views import ProgramApi

POINTS_LIMIT = 2**31 - 1


class PostedEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    member_id = serializers.IntegerField()
    kind = serializers.CharField()
    points = serializers.IntegerField()
    reason = serializers.CharField(allow_blank=True)
    reference = serializers.CharField(allow_blank=True)
    available_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class AdjustmentApi(ProgramApi):
    """A signed manual adjustment with a required reason. A credit is a lot that expires as if
    earned now; a debit may leave a debt (rule 3). Needs a key with the `adjust` scope; the
    entry's reference names the key. Refusals: 400 (zero points, no reason), 404 member."""

    idempotency_required = True
    write_scope = Scope.ADJUST

    class InputSerializer(MemberReferenceSerializer):
        points = serializers.IntegerField(min_value=-POINTS_LIMIT, max_value=POINTS_LIMIT)
        reason = serializers.CharField(max_length=255)
        notify_member = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Email the member about the adjustment, with the reason (points_added / points_removed).",
        )

        def validate_points(self, value: int) -> int:
            if value == 0:
                raise serializers.ValidationError("Points must not be zero.")
            return value

    class OutputSerializer(ReadScopedSerializer):
        read_scope_fields = ("balance",)

        member_id = serializers.IntegerField()
        entries = PostedEntrySerializer(many=True)
        balance = BalanceSerializer()

    @extend_schema(
        summary="Adjust a member's points",
        request=InputSerializer,
        responses={201: OpenApiResponse(OutputSerializer), **error_responses(400, 404, 409, 422)},
    )
    def post(self, request: Request) -> Response:
        data = parse_input(self.InputSerializer, request)
        member = member_from_reference(program=self.program, reference=data)
        result = services.points_adjust(
            program=self.program,
            member_id=member.pk,
            points=data["points"],
            reason=data["reason"],
            source=f"api-key:{request.auth.prefix} ({request.auth.name})",
            idempotency_key=idempotency_key(request),
            notify_member=data["notify_member"],
        )
        return Response(self.OutputSerializer(result, context=self.serializer_context()).data, status=201)


# `from` is a Python keyword: the input serializer is built with type().
TransferInputSerializer = type(
    "TransferInputSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "Move `points` available points from one member to another of the program.",
        "from": MemberReferenceSerializer(),
        "to": MemberReferenceSerializer(),
        "points": serializers.IntegerField(min_value=1, max_value=POINTS_LIMIT),
        "reason": serializers.CharField(max_length=255, required=False, allow_blank=True, default=""),
    },
)


class TransferApi(ProgramApi):
    """Move available points between two members of the program; the receiver's points keep
    their original expiry dates. Refusals: 400 (same member twice), 404 either member, 422
    `insufficient_points` / `member_blocked`."""

    idempotency_required = True

    class OutputSerializer(ReadScopedSerializer):
        read_scope_fields = ("from_balance", "to_balance")

        from_member_id = serializers.IntegerField()
        to_member_id = serializers.IntegerField()
        points = serializers.IntegerField()
        entries = PostedEntrySerializer(many=True)
        from_balance = BalanceSerializer()
        to_balance = BalanceSerializer()

    @extend_schema(
        summary="Transfer points between members",
        request=TransferInputSerializer,
        responses={201: OpenApiResponse(OutputSerializer), **error_responses(400, 404, 409, 422)},
    )
    def post(self, request: Request) -> Response:
        data = parse_input(TransferInputSerializer, request)
        sender = member_from_reference(program=self.program, reference=data["from"])
        receiver = member_from_reference(program=self.program, reference=data["to"])
        result = services.points_transfer(
            program=self.program,
            from_member_id=sender.pk,
            to_member_id=receiver.pk,
            points=data["points"],
            reason=data["reason"],
            idempotency_key=idempotency_key(request),
        )
        body = {
            "from_member_id": sender.pk,
            "to_member_id": receiver.pk,
            "points": data["points"],
            "entries": result.entries,
        }
        if self.shows_member_data:
            body["from_balance"] = result.balance
            body["to_balance"] = result.other_balances.get(receiver.pk) or Member.objects.get(pk=receiver.pk)
        return Response(self.OutputSerializer(body, context=self.serializer_context()).data, status=201)


urlpatterns = [
    path("adjustments", AdjustmentApi.as_view(), name="adjustment-create"),
    path("transfers", TransferApi.as_view(), name="transfer-create"),
]
