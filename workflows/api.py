"""Activity endpoints of the REST API (docs/api.md): report an activity (it earns by the earning
rules), report a refund, and preview what an activity would earn.

One class per operation (docs/contributing.md) on `loyalty.api.views.ProgramApi` (key, scopes, error
envelope, idempotency).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from cards.services import member_for_card
from loyalty import errors
from loyalty.api.errors import error_responses
from loyalty.api.idempotency import idempotency_key
from loyalty.api.member_data import BalanceSerializer, ReadScopedSerializer
from loyalty.api.output import balance_data, datetime_data
from loyalty.api.parsing import InputSerializer, OccurredAtField, parse_input
from loyalty.api.references import MemberReferenceSerializer, member_from_reference
from loyalty.api.views import ProgramApi
from loyalty.models import Activity, Member, Program

from . import selectors, services
from .api_automations import urlpatterns as automation_urlpatterns
from .api_members import urlpatterns as member_urlpatterns
from .models import validate_activity_type


class ItemSerializer(InputSerializer):
    sku = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    category = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0)


class EntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    points = serializers.IntegerField()
    reason = serializers.CharField()
    available_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class AwardSerializer(serializers.Serializer):
    rule_id = serializers.IntegerField(source="rule.id")
    rule = serializers.CharField(source="rule.name")
    points = serializers.IntegerField()


def entry_data(entry: Any) -> dict[str, Any]:
    """`EntrySerializer`'s answer, as a dict (loyalty/api/output.py)."""
    return {
        "id": int(entry.id),
        "kind": str(entry.kind),
        "points": int(entry.points),
        "reason": str(entry.reason),
        "available_at": datetime_data(entry.available_at),
        "expires_at": datetime_data(entry.expires_at),
    }


def award_data(award: Any) -> dict[str, Any]:
    """`AwardSerializer`'s answer, as a dict."""
    return {"rule_id": int(award.rule.id), "rule": str(award.rule.name), "points": int(award.points)}


def activity_result_data(result: services.ActivityResult, *, shows_member_data: bool) -> dict[str, Any]:
    """`ActivityReportApi.OutputSerializer`'s answer, as a dict (the balance only for a key
    with the `read` scope)."""
    data = {
        "activity_id": int(result.activity.id),
        "member_id": int(result.activity.member_id),
        "points_awarded": int(result.points),
        "awards": [award_data(a) for a in result.awards],
        "entries": [entry_data(e) for e in result.entries],
        "budget_notes": [str(n) for n in result.budget_notes],
        "held_for_review": result.held_for_review,
    }
    if shows_member_data:
        data["balance"] = balance_data(result.balance)
    return data


class ActivityInputSerializer(MemberReferenceSerializer):
    """An activity of a member. Not every type can be reported: a refund goes to
    `POST /refunds`, and a birthday is never reported (400): the `award_birthdays` job awards the
    birthday bonus itself, once a year per member on the birthday in the program's time zone,
    so that a shop cannot grant it twice."""

    type = serializers.CharField(
        max_length=40,
        validators=[validate_activity_type],
        help_text="purchase, signup, referral, social_share, store_visit, review, or a custom name. "
        "Not `refund` (use POST /refunds) nor `birthday` (awarded by the award_birthdays job only): 400.",
    )
    occurred_at = OccurredAtField(
        required=False,
        help_text="Default: now. Within the last API_OCCURRED_AT_MAX_AGE_DAYS days (3 years by default) and at "
        "most API_CLOCK_SKEW_SECONDS (300) ahead of the server's clock, else 400.",
    )
    order_id = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False)
    currency = serializers.CharField(max_length=3, required=False, allow_blank=True, default="")
    channel = serializers.ChoiceField(choices=Activity.Channel.choices, required=False, allow_blank=True, default="")
    items = ItemSerializer(
        many=True,
        required=False,
        default=list,
        max_length=settings.API_MAX_ACTIVITY_ITEMS,
        help_text="The order's lines, API_MAX_ACTIVITY_ITEMS (500) at most.",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["items"].max_length = settings.API_MAX_ACTIVITY_ITEMS  # read per request, as tests override it
        return fields

    def validate_type(self, value: str) -> str:
        if value == Activity.Type.REFUND:
            raise serializers.ValidationError("Report refunds with POST /refunds.")
        if value == Activity.Type.BIRTHDAY:
            raise serializers.ValidationError(
                "Birthday bonuses are awarded by the award_birthdays job (once a year, on the member's "
                "birthday in the program's time zone); they cannot be reported, so a shop cannot grant one twice."
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs["type"] == Activity.Type.PURCHASE:
            missing = {f: ["Required for a purchase."] for f in ("order_id", "amount") if not attrs.get(f)}
            if attrs.get("amount") is not None:
                missing.pop("amount", None)
            if missing:
                raise serializers.ValidationError(missing)
        program: Program = self.context["program"]
        currency = attrs.get("currency")
        if currency and currency.upper() != program.currency:
            raise serializers.ValidationError({"currency": [f"This program counts in {program.currency}."]})
        return attrs


def _member(api: ProgramApi, data: dict[str, Any], *, enrol: bool) -> Member:
    """The referenced member; a card number of unassigned stock enrols an anonymous member
    (`cards.services.member_for_card`) when `enrol`."""
    if enrol and data.get("card_number") is not None:
        return member_for_card(program=api.program, number=data["card_number"])
    return member_from_reference(program=api.program, reference=data)


NEW_CUSTOMER_FIELDS = ("email", "first_name", "last_name")


class ActivityReportInputSerializer(ActivityInputSerializer):
    """An activity to report; for a purchase of a customer not enrolled yet, what the shop
    knows of them."""

    email = serializers.EmailField(
        max_length=254,
        required=False,
        allow_blank=True,
        help_text="With `external_id`: the customer's email, used only if this purchase enrols them "
        "(the program's `enrol_on_first_purchase`); an existing member's profile is not changed.",
    )
    first_name = serializers.CharField(
        max_length=150, required=False, allow_blank=True, help_text="Like `email`: used only on enrolment."
    )
    last_name = serializers.CharField(
        max_length=150, required=False, allow_blank=True, help_text="Like `email`: used only on enrolment."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        given = [f for f in NEW_CUSTOMER_FIELDS if f in attrs]
        if given and attrs.get("external_id") is None:
            message = "Only with external_id: a purchase enrols a new customer by the shop's id only."
            raise serializers.ValidationError({f: [message] for f in given})
        return attrs


def _new_customer(data: dict[str, Any]) -> services.NewCustomer | None:
    """The customer a purchase names by external id, for enrol on first purchase; None for
    any other reference or activity type (those keep their 404)."""
    if data["type"] != Activity.Type.PURCHASE or data.get("external_id") is None:
        return None
    return services.NewCustomer(external_id=data["external_id"], **{f: data.get(f) or "" for f in NEW_CUSTOMER_FIELDS})


class ActivityReportApi(ProgramApi):
    """Report an activity: the earning rules decide the points, one ledger entry per rule that
    fires. A purchase on an unassigned card enrols an anonymous member; a purchase for an
    unknown `external_id` enrols that customer (with `email`, `first_name`, `last_name`) when
    the program enrols on first purchase. Refusals: 400 invalid input, 404
    `member_not_found` / `card_not_found`, 409 an order reported twice, an idempotency
    conflict or `duplicate_email` (the new customer's email is another member's), 422
    `member_blocked` / `card_blocked`."""

    idempotency_required = True

    class InputSerializer(ActivityReportInputSerializer):
        pass

    class OutputSerializer(ReadScopedSerializer):
        read_scope_fields = ("balance",)

        activity_id = serializers.IntegerField(source="activity.id")
        member_id = serializers.IntegerField(source="activity.member_id")
        points_awarded = serializers.IntegerField(source="points")
        awards = AwardSerializer(many=True)
        entries = EntrySerializer(many=True)
        budget_notes = serializers.ListField(
            child=serializers.CharField(),
            help_text="Why a budget cut or stopped a rule's points (docs/budgets.md); empty when none did.",
        )
        held_for_review = serializers.BooleanField(
            help_text="True when a fraud limit of the program tripped: the points are accepted but held pending "
            "until staff review them (docs/fraud.md)."
        )
        balance = BalanceSerializer()

    @extend_schema(
        summary="Report an activity",
        request=InputSerializer,
        responses={201: OpenApiResponse(OutputSerializer), **error_responses(400, 404, 409, 422)},
    )
    def post(self, request: Request) -> Response:
        data = parse_input(self.InputSerializer, request, program=self.program)
        customer = _new_customer(data)
        try:
            member = _member(self, data, enrol=data["type"] == Activity.Type.PURCHASE)
        except errors.MemberNotFound:
            if customer is None:
                raise
            member = None  # the service enrols the customer, or answers 404 as before
        result = services.activity_report(
            program=self.program,
            member=member,
            customer=customer,
            type=data["type"],
            occurred_at=data.get("occurred_at") or timezone.now(),
            order_id=data["order_id"],
            amount=data.get("amount"),
            currency=data["currency"].upper(),
            channel=data["channel"],
            items=[dict(i) for i in data["items"]],
            idempotency_key=idempotency_key(request),
        )
        # OutputSerializer's answer, built directly (loyalty/api/output.py).
        return Response(activity_result_data(result, shows_member_data=self.shows_member_data), status=201)


class RefundReportApi(ProgramApi):
    """Refund (part of) an order: its points are taken back in proportion to the amount.
    Refusals: 404 `order_not_found`, 422 `refund_exceeds_order`."""

    idempotency_required = True

    class InputSerializer(serializers.Serializer):
        order_id = serializers.CharField(max_length=255)
        amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
        occurred_at = OccurredAtField(required=False, help_text="Default: now. The window of `POST /activities`.")

    class OutputSerializer(ReadScopedSerializer):
        read_scope_fields = ("balance",)

        member_id = serializers.IntegerField()
        entries = EntrySerializer(many=True)
        balance = BalanceSerializer()

    @extend_schema(
        summary="Report a refund",
        request=InputSerializer,
        responses={201: OpenApiResponse(OutputSerializer), **error_responses(400, 404, 409, 422)},
    )
    def post(self, request: Request) -> Response:
        data = parse_input(self.InputSerializer, request)
        result = services.refund_report(
            program=self.program,
            order_id=data["order_id"],
            amount=data["amount"],
            occurred_at=data.get("occurred_at"),
            idempotency_key=idempotency_key(request),
        )
        return Response(self.OutputSerializer(result, context=self.serializer_context()).data, status=201)


class ActivityPreviewApi(ProgramApi):
    """What an activity would earn the member now (rules, caps, tier), posting nothing. The
    member must exist (an unassigned card: 404)."""

    class InputSerializer(ActivityInputSerializer):
        pass

    class OutputSerializer(serializers.Serializer):
        points = serializers.IntegerField()
        awards = AwardSerializer(many=True)
        budget_notes = serializers.ListField(
            child=serializers.CharField(),
            help_text='Why a budget would cut or stop a rule\'s points ("Budget of rule ... used up ..."), '
            "as of now; empty when none would.",
        )

    @extend_schema(
        summary="Preview what an activity would earn",
        request=InputSerializer,
        responses={200: OpenApiResponse(OutputSerializer), **error_responses(400, 404)},
    )
    def post(self, request: Request) -> Response:
        data = parse_input(self.InputSerializer, request, program=self.program)
        member = _member(self, data, enrol=False)
        preview = selectors.activity_preview(
            program=self.program,
            member=member,
            type=data["type"],
            occurred_at=data.get("occurred_at"),
            amount=data.get("amount"),
            channel=data["channel"],
            items=[dict(i) for i in data["items"]],
        )
        return Response(self.OutputSerializer(preview).data)


urlpatterns = [
    path("activities", ActivityReportApi.as_view(), name="activity-report"),
    path("activities/preview", ActivityPreviewApi.as_view(), name="activity-preview"),
    path("refunds", RefundReportApi.as_view(), name="refund-report"),
    *member_urlpatterns,
    *automation_urlpatterns,
]
