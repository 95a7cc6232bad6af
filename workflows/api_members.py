"""Member endpoints of the REST API (docs/api.md): enrol, read, find, change a member, and read the
member's ledger.

The member representation combines the loyalty core (profile, balances, ledger), the cards
app (the member's cards), the tiers app (current tier, progress to the next) and the
referrals (the referrer's code at enrolment): only `workflows` may import all of those
(the layering of docs/architecture.md), hence this module here. One class per path (GET and PATCH of one
member share a URL, so they share a class; each operation has its own operation id), on
`loyalty.api.views.ProgramApi` (key, scopes, error envelope, idempotency, cursor pagination).
Every look-up is by `self.program`: another program's member is a 404, exactly like an
unknown id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from cards import errors as card_errors
from cards import selectors as card_selectors
from cards.models import Card
from loyalty import services as loyalty_services
from loyalty.api.errors import error_responses
from loyalty.api.member_data import BalanceSerializer, ReadScopedSerializer
from loyalty.api.pagination import ApiCursorPagination
from loyalty.api.parsing import parse_input
from loyalty.api.references import member_from_reference
from loyalty.api.views import ProgramApi
from loyalty.models import LedgerEntry, Member, Program
from tiers import selectors as tier_selectors

from . import services

ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The member's id.")
_OLDEST_BIRTHDAY = dt.date(1900, 1, 1)

# --------------------------------------------------------------------------------------------
# The member representation


@dataclass(frozen=True)
class MemberView:
    """What the API shows of a member: the row, its cards, its tier and (on the single-member
    operations) the progress to the next tier."""

    member: Member
    cards: list[Card]
    tier: dict[str, Any] | None
    next_tier: dict[str, Any] | None = None


def member_view(*, program: Program, member: Member, now: dt.datetime | None = None) -> MemberView:
    """The full representation of one member of `program`. Queries: 4 (the cards; the tiers
    selector's tier state, metric and next tier), whatever the member's history."""
    member.program = program  # the caller resolved the member within `program`: no query
    progress = tier_selectors.member_tier_progress(member=member, now=now or timezone.now())
    tier = None
    if progress.tier is not None:
        tier = {
            "id": progress.tier.pk,
            "name": progress.tier.name,
            "multiplier": progress.tier.multiplier,
            "since": progress.since,
        }
    next_tier = None
    if progress.next_tier is not None:
        next_tier = {
            "id": progress.next_tier.pk,
            "name": progress.next_tier.name,
            "threshold": progress.next_tier.threshold,
            "metric": program.tier_metric,
            "current": progress.metric,
            "needed": progress.needed,
        }
    cards = list(card_selectors.member_cards(member=member))
    return MemberView(member=member, cards=cards, tier=tier, next_tier=next_tier)


def _summary_view(member: Member) -> MemberView:
    """A member of a search result: its tier state and cards were loaded with the page
    (`_members_found`), so this queries nothing."""
    state = getattr(member, "tier_state", None)  # reverse one-to-one: absent = never had a tier
    tier = None
    if state is not None and state.tier is not None:
        tier = {"id": state.tier.pk, "name": state.tier.name, "multiplier": state.tier.multiplier, "since": state.since}
    return MemberView(member=member, cards=list(member.cards.all()), tier=tier)


class MemberCardSerializer(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.ChoiceField(choices=Card.Status.choices)
    kind = serializers.ChoiceField(choices=Card.Kind.choices)


class MemberTierSerializer(serializers.Serializer):
    """The member's current tier."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    multiplier = serializers.DecimalField(
        max_digits=6, decimal_places=3, help_text="Earn multiplier on purchase points."
    )
    since = serializers.DateTimeField(help_text="When the member reached (or was given) this tier.")


class MemberNextTierSerializer(serializers.Serializer):
    """The tier above the member's current one and what the member still needs to reach it."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    threshold = serializers.DecimalField(
        max_digits=14, decimal_places=2, help_text="Value of the program's tier metric that reaches this tier."
    )
    metric = serializers.ChoiceField(
        choices=Program.TierMetric.choices,
        help_text="The program's tier metric (over its tier window): points earned, amount spent or order count.",
    )
    current = serializers.DecimalField(
        max_digits=20, decimal_places=2, help_text="The member's value of the metric over the window, now."
    )
    needed = serializers.DecimalField(
        max_digits=20, decimal_places=2, help_text="What the metric still lacks: `threshold` - `current`, at least 0."
    )


class MemberSummarySerializer(ReadScopedSerializer):
    """A member as a search finds it: profile, status, balance, current tier, cards. The
    progress to the next tier (`next_tier`) is on `GET /members/{id}` only. A key without the
    `read` scope (enrolling, changing) sees the member's `id` and `external_id` only."""

    read_scope_fields = (
        "email",
        "first_name",
        "last_name",
        "birthday",
        "status",
        "email_consent",
        "enrolled_at",
        "enrollment_channel",
        "referral_code",
        "balance",
        "tier",
        "cards",
    )

    id = serializers.IntegerField(source="member.id")
    external_id = serializers.CharField(
        source="member.external_id", allow_null=True, help_text="The shop's customer id."
    )
    email = serializers.CharField(source="member.email", allow_blank=True)
    first_name = serializers.CharField(source="member.first_name", allow_blank=True)
    last_name = serializers.CharField(source="member.last_name", allow_blank=True)
    birthday = serializers.DateField(source="member.birthday", allow_null=True)
    status = serializers.ChoiceField(source="member.status", choices=Member.Status.choices)
    email_consent = serializers.BooleanField(source="member.email_consent")
    enrolled_at = serializers.DateTimeField(source="member.enrolled_at")
    enrollment_channel = serializers.ChoiceField(
        source="member.enrollment_channel",
        choices=Member.Channel.choices,
        help_text="How the member enrolled (`api` for `POST /members`).",
    )
    referral_code = serializers.CharField(
        source="member.referral_code", help_text="The member's own code, to give to friends they refer."
    )
    balance = BalanceSerializer(source="member")
    tier = MemberTierSerializer(allow_null=True, help_text="The current tier; null without one.")
    cards = MemberCardSerializer(many=True, help_text="The member's cards, newest first (blocked ones included).")


class MemberSerializer(MemberSummarySerializer):
    """A member with balance, current tier, progress to the next tier, cards and referral code
    (for a key without the `read` scope: `id` and `external_id` only)."""

    read_scope_fields = (*MemberSummarySerializer.read_scope_fields, "next_tier")

    next_tier = MemberNextTierSerializer(
        allow_null=True, help_text="The next tier up and what is still needed; null at the top tier or without tiers."
    )


def _member_response(view: ProgramApi, member: Member, *, status: int = 200) -> Response:
    context = view.serializer_context()
    if not view.shows_member_data:  # the ids only: no need to read the tier and cards
        return Response(MemberSerializer(MemberView(member=member, cards=[], tier=None), context=context).data, status)
    return Response(MemberSerializer(member_view(program=view.program, member=member), context=context).data, status)


# --------------------------------------------------------------------------------------------
# Input


def _validate_birthday(value: dt.date | None) -> dt.date | None:
    if value is not None and not (_OLDEST_BIRTHDAY <= value <= timezone.localdate()):
        raise serializers.ValidationError("A birthday lies between 1900-01-01 and today.")
    return value


def _normalized_card_number(value: str) -> str:
    try:
        return card_selectors.well_formed_number(value)
    except card_errors.InvalidCardNumber as exc:
        raise serializers.ValidationError(exc.message) from exc


class MemberEnrolSerializer(serializers.Serializer):
    """A customer to enrol. An `external_id` already enrolled returns that member unchanged."""

    external_id = serializers.CharField(
        max_length=255,
        required=False,
        allow_null=True,
        help_text="The shop's customer id (unique in the program). Enrolling it again returns that member with 200.",
    )
    email = serializers.EmailField(
        max_length=254,
        required=False,
        allow_blank=True,
        default="",
        help_text="Unique in the program, case-insensitively (another member's email: 409 `duplicate_email`).",
    )
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    birthday = serializers.DateField(required=False, allow_null=True, default=None)
    email_consent = serializers.BooleanField(required=False, default=False)
    card_number = serializers.CharField(
        max_length=40,
        required=False,
        help_text="An unassigned (stock) card of the program to assign to the new member instead of a digital "
        "card (spaces and dashes are ignored). Unknown: 404 `card_not_found`; assigned, blocked or void: 422 "
        "`card_not_assignable`; either way nobody is enrolled.",
    )
    referral_code = serializers.CharField(
        max_length=16,
        required=False,
        help_text="The referral code of the member who referred this customer (a member of the same program).",
    )

    def validate_birthday(self, value: dt.date | None) -> dt.date | None:
        return _validate_birthday(value)

    def validate_card_number(self, value: str) -> str:
        return _normalized_card_number(value)

    def validate_referral_code(self, value: str) -> str:
        return value.strip().upper()


class MemberUpdateSerializer(serializers.Serializer):
    """The fields to change (all optional); any other field is refused with 400."""

    external_id = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    birthday = serializers.DateField(required=False, allow_null=True)
    email_consent = serializers.BooleanField(required=False)
    status = serializers.ChoiceField(
        choices=Member.Status.choices,
        required=False,
        help_text="`blocked`: the member neither earns nor spends (activities and redemptions answer 422 "
        "`member_blocked`); `active` lifts it.",
    )

    def validate_birthday(self, value: dt.date | None) -> dt.date | None:
        return _validate_birthday(value)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Unknown fields are reported together with the invalid ones: one 400 names them all.
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        problems = {name: ["Unknown field: it cannot be changed here."] for name in unknown}
        try:
            attrs = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**problems, **exc.detail}) from exc
        if problems:
            raise serializers.ValidationError(problems)
        return attrs


class MemberSearchSerializer(serializers.Serializer):
    """The query parameters of `GET /members` (exact matches, combined with AND)."""

    external_id = serializers.CharField(max_length=255, required=False)
    email = serializers.CharField(max_length=254, required=False)
    card_number = serializers.CharField(max_length=40, required=False)

    def validate_email(self, value: str) -> str:
        return value.strip().lower()  # emails are stored lowercased (member_enrol)

    def validate_card_number(self, value: str) -> str:
        return _normalized_card_number(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(attrs.get(name) for name in self.fields):
            message = "Give at least one of external_id, email or card_number."
            raise serializers.ValidationError({name: [message] for name in self.fields})
        return attrs


def _referrer(program: Program, code: str | None) -> Member | None:
    """The member of `program` whose referral code is `code` (unique per program); an unknown
    code is bad input, 400 naming the field. Queries: 1 (member_unique_referral_code)."""
    if not code:
        return None
    referrer = Member.objects.filter(program=program, referral_code=code).first()
    if referrer is None:
        raise serializers.ValidationError({"referral_code": ["No member of this program has this referral code."]})
    return referrer


def _members_found(program: Program, filters: dict[str, Any]) -> QuerySet[Member]:
    """Members of `program` matching every given filter, their tier and cards loaded with the
    page (2 queries per page). Indexes: member_unique_external_id, member_program_email, the
    card's unique number."""
    members = Member.objects.filter(program=program)
    if filters.get("external_id"):
        members = members.filter(external_id=filters["external_id"])
    if filters.get("email"):
        members = members.filter(email=filters["email"])
    if filters.get("card_number"):
        # Any card the member holds or held (a blocked, replaced card still names its member).
        members = members.filter(cards__number=filters["card_number"])
    return members.select_related("tier_state__tier").prefetch_related(
        Prefetch("cards", queryset=Card.objects.order_by("-id"))
    )


# --------------------------------------------------------------------------------------------
# Views


class MembersApi(ProgramApi):
    """`POST /members` enrols a customer; `GET /members` finds members."""

    @extend_schema(
        operation_id="member_enrol",
        summary="Enrol a member",
        description="Enrol a customer. An `external_id` already enrolled returns that member with 200 and "
        "changes nothing (the rest of the body is not applied, `card_number` is not assigned). A new member "
        "(201) gets the card `card_number` when given, else a new digital card; both are in the response. "
        "With `referral_code`, the member who owns the code is recorded as the referrer (the referral "
        "rewards follow the program's referral settings). Refusals: 400 `invalid` (the fields, an unknown "
        "`referral_code`), 404 `card_not_found`, 409 `duplicate_email` (another member of the program has "
        "this email, whatever its case), 422 `card_not_assignable`: nobody is enrolled then.",
        request=MemberEnrolSerializer,
        responses={
            201: OpenApiResponse(MemberSerializer, description="The new member."),
            200: OpenApiResponse(MemberSerializer, description="The member already enrolled with this `external_id`."),
            **error_responses(400, 404, 409, 422),
        },
    )
    def post(self, request: Request) -> Response:
        data = parse_input(MemberEnrolSerializer, request)
        program = self.program
        referrer = _referrer(program, data.get("referral_code"))
        member, created = services.member_enrol_with_card(
            program=program,
            external_id=data.get("external_id"),
            email=data["email"],
            first_name=data["first_name"],
            last_name=data["last_name"],
            birthday=data["birthday"],
            email_consent=data["email_consent"],
            referred_by=referrer,
            card_number=data.get("card_number"),
            channel=Member.Channel.API,
        )
        return _member_response(self, member, status=201 if created else 200)

    @extend_schema(
        operation_id="member_search",
        summary="Find members",
        description="Members of the program matching every given filter exactly (at least one is required, "
        "else 400): `external_id`, `email` (case-insensitive: emails are stored lowercased), `card_number` "
        "(any card the member holds, blocked ones included). Newest member first, paginated by cursor. "
        "Each result has no `next_tier`: read `GET /members/{id}` for it.",
        parameters=[
            OpenApiParameter("external_id", str, OpenApiParameter.QUERY, description="The shop's customer id."),
            OpenApiParameter("email", str, OpenApiParameter.QUERY, description="The member's email."),
            OpenApiParameter(
                "card_number", str, OpenApiParameter.QUERY, description="A card number (spaces and dashes ignored)."
            ),
        ],
        responses={200: MemberSummarySerializer(many=True), **error_responses(400)},
    )
    def get(self, request: Request) -> Response:
        serializer = MemberSearchSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        paginator = ApiCursorPagination()
        page = paginator.paginate_queryset(_members_found(self.program, serializer.validated_data), request, view=self)
        return paginator.get_paginated_response(
            MemberSummarySerializer([_summary_view(m) for m in page], many=True, context=self.serializer_context()).data
        )


class MemberApi(ProgramApi):
    """`GET /members/{id}` reads a member; `PATCH /members/{id}` changes one."""

    @extend_schema(
        operation_id="member_get",
        summary="Read a member",
        description="The member with balance, current tier (`since` when), the next tier and what is still "
        "needed on the program's tier metric, cards and referral code. A member of another program: 404.",
        parameters=[ID_PARAMETER],
        responses={200: OpenApiResponse(MemberSerializer, description="The member."), **error_responses(404)},
    )
    def get(self, request: Request, id: int) -> Response:
        # Queries: 6 whatever the member's history (key, member, tier state, metric, next tier, cards).
        member = member_from_reference(program=self.program, reference={"member_id": id})
        return _member_response(self, member)

    @extend_schema(
        operation_id="member_update",
        summary="Change a member",
        description="Change profile fields (`external_id`, `email`, `first_name`, `last_name`, `birthday`), "
        "`email_consent` and `status` (`active`/`blocked`). Only the fields given change; an unknown field is "
        "400. Refusals: 404 (not a member of this program), 409 `conflict` (the `external_id` is another "
        "member's) or `duplicate_email` (the `email` is another member's, whatever its case); nothing changes then.",
        parameters=[ID_PARAMETER],
        request=MemberUpdateSerializer,
        responses={
            200: OpenApiResponse(MemberSerializer, description="The member, changed."),
            **error_responses(400, 404, 409),
        },
    )
    def patch(self, request: Request, id: int) -> Response:
        data = parse_input(MemberUpdateSerializer, request)
        member = member_from_reference(program=self.program, reference={"member_id": id})
        status = data.pop("status", None)
        with transaction.atomic():  # the profile and the status change together or not at all
            if data:
                loyalty_services.member_update(member=member, **data)
            if status is not None:
                loyalty_services.member_set_status(member=member, status=status)
        return _member_response(self, member)


class MemberLedgerApi(ProgramApi):
    """`GET /members/{id}/ledger`: the member's ledger entries, newest first."""

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices)
        points = serializers.IntegerField(help_text="Signed: credits positive, debits negative.")
        created_at = serializers.DateTimeField()
        occurred_at = serializers.DateTimeField(help_text="When the activity happened (dates the points).")
        available_at = serializers.DateTimeField(
            allow_null=True, help_text="Credits: when the points become spendable (pending until then)."
        )
        expires_at = serializers.DateTimeField(allow_null=True, help_text="Credits: when what is left expires.")
        remaining = serializers.IntegerField(
            help_text="Credits: points of this lot not yet spent or expired. Debits: the part still owed (<= 0)."
        )
        reason = serializers.CharField(allow_blank=True)
        reference = serializers.CharField(allow_blank=True, help_text="Order id, coupon code, transfer id...")

    @extend_schema(
        operation_id="member_ledger",
        summary="A member's ledger",
        description="The member's ledger entries, newest first, paginated by cursor (`limit` up to 200). "
        "A member of another program: 404.",
        parameters=[ID_PARAMETER],
        responses={200: OutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request: Request, id: int) -> Response:
        member = member_from_reference(program=self.program, reference={"member_id": id})
        # Keyset pages on the entry_member_recent index (member_id, id DESC): each page is one
        # index range scan, as fast for a member's 100,000th entry as for the first.
        entries = LedgerEntry.objects.filter(member_id=member.pk).only(*self.OutputSerializer().fields)
        return self.paginated_response(entries, self.OutputSerializer)


urlpatterns = [
    path("members", MembersApi.as_view(), name="members"),
    path("members/<int:id>", MemberApi.as_view(), name="member"),
    path("members/<int:id>/ledger", MemberLedgerApi.as_view(), name="member-ledger"),
]
