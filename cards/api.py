"""Card endpoints of the REST API (docs/api.md): the POS look-up and the assignment of stock cards.

One class per operation (docs/contributing.md); the machinery (API key, scopes, errors,
idempotency) is `loyalty.api.views.ProgramApi`. Every look-up is by `self.program`: a card of
another program is a 404, exactly like an unknown number.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from loyalty.api.errors import error_responses
from loyalty.api.member_data import BalanceSerializer, ReadScopedSerializer
from loyalty.api.parsing import parse_input
from loyalty.api.references import MemberReferenceSerializer, member_from_reference
from loyalty.api.views import ProgramApi

from . import selectors, services
from .models import Card

NUMBER_PARAMETER = OpenApiParameter(
    "number",
    str,
    OpenApiParameter.PATH,
    description="The card number (digits with a Luhn check digit; spaces and dashes are ignored).",
)


class CardMemberSerializer(ReadScopedSerializer):
    """The card's member: for a key without the `read` scope (assigning a card), its ids only."""

    read_scope_fields = ("email", "first_name", "last_name", "status", "balance")

    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True, help_text="The shop's customer id.")
    email = serializers.CharField(allow_blank=True)
    first_name = serializers.CharField(allow_blank=True)
    last_name = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(choices=["active", "blocked"])
    balance = BalanceSerializer(source="*")


class CardSerializer(serializers.Serializer):
    """A card with its member and the member's balance (`member` is null for unassigned stock)."""

    number = serializers.CharField()
    status = serializers.ChoiceField(choices=Card.Status.choices)
    kind = serializers.ChoiceField(choices=Card.Kind.choices)
    program = serializers.CharField(source="program.slug", help_text="The program's slug.")
    member = CardMemberSerializer(allow_null=True)


def _card_response(card: Card, api: ProgramApi) -> Response:
    # The card belongs to the key's program (the selector and service filter on it): no query.
    card.program = api.program
    return Response(CardSerializer(card, context=api.serializer_context()).data)


class CardLookupApi(ProgramApi):
    """POS look-up: the card's status and its member with the balance; an unassigned card has
    `member: null`. Refusals: 400 `invalid_card_number` (a mistyped number: wrong digits, length or
    check digit), 404 `card_not_found` (no such card in this program)."""

    # Queries: 1 (the card by its unique number, member joined).

    @extend_schema(
        summary="Look up a card",
        parameters=[NUMBER_PARAMETER],
        responses={200: OpenApiResponse(CardSerializer, description="The card."), **error_responses(400, 404)},
    )
    def get(self, request: Request, number: str) -> Response:
        card = selectors.card_lookup(program=self.program, number=number)
        return _card_response(card, self)


class CardAssignApi(ProgramApi):
    """Assign an unassigned (stock) card to a member named by exactly one of `member_id`,
    `external_id` or `card_number`. Refusals: 400 `invalid_card_number` or `invalid` (the
    reference), 404 `card_not_found` / `member_not_found`, 422 `card_not_assignable` (the card
    is active, blocked or void)."""

    class InputSerializer(MemberReferenceSerializer):
        """The member to assign the card to: exactly one of `member_id`, `external_id` or
        `card_number` (another, active card of the member)."""

    @extend_schema(
        summary="Assign a card to a member",
        parameters=[NUMBER_PARAMETER],
        request=InputSerializer,
        responses={
            200: OpenApiResponse(CardSerializer, description="The card, now active and assigned to the member."),
            **error_responses(400, 404, 409, 422),
        },
    )
    def post(self, request: Request, number: str) -> Response:
        data: dict[str, Any] = parse_input(self.InputSerializer, request)
        selectors.well_formed_number(number)  # a mistyped card number is a 400 before any look-up
        member = member_from_reference(program=self.program, reference=data)
        card = services.card_assign(program=self.program, number=number, member=member)
        return _card_response(card, self)


urlpatterns = [
    path("cards/<str:number>", CardLookupApi.as_view(), name="card-lookup"),
    path("cards/<str:number>/assign", CardAssignApi.as_view(), name="card-assign"),
]
