"""Reads of the cards app."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.models import Member, Program

from . import errors, numbers
from .models import Card, CardBatch, CardBatchEvent, CardEvent


def well_formed_number(number: str) -> str:
    """The normalized number (spaces and dashes dropped) if it is well formed, else
    `InvalidCardNumber`. No query: a mistyped number never reaches the database."""
    normalized = numbers.normalize(number or "")
    if not numbers.is_well_formed(normalized):
        raise errors.InvalidCardNumber(
            "This is not a valid card number (check the digits).", field="card_number", number=normalized
        )
    return normalized


def card_lookup(*, program: Program, number: str) -> Card:
    """The card of `program` with this number, its member joined in.

    Raises `InvalidCardNumber` without a query when the number is malformed (digits, length,
    Luhn check digit), `CardNotFound` when no card of this program has it (a card of another
    program is not found either). Queries: 1 (the unique index on `number`)."""
    normalized = well_formed_number(number)
    card = Card.objects.select_related("member").filter(program=program, number=normalized).first()
    if card is None:
        raise errors.CardNotFound("No card with this number.", field="card_number", number=normalized)
    return card


def member_cards(*, member: Member) -> QuerySet[Card]:
    """The member's cards, newest first (index on `member_id`)."""
    return Card.objects.filter(member=member).order_by("-id")


def member_has_card(*, member: Member) -> bool:
    return Card.objects.filter(member=member).exists()


def card_events(*, card: Card, limit: int = 20) -> QuerySet[CardEvent]:
    """The card's latest events, newest first, with their member and staff user joined.
    Queries: 1 (index cardevent_card_recent: card, -id)."""
    return CardEvent.objects.filter(card_id=card.pk).select_related("member", "actor").order_by("-id")[:limit]


def batch_events(*, batch: CardBatch, limit: int = 50) -> QuerySet[CardBatchEvent]:
    """The batch's latest events, newest first, with their staff user. Queries: 1 (index on batch_id)."""
    return CardBatchEvent.objects.filter(batch_id=batch.pk).select_related("actor").order_by("-id")[:limit]
