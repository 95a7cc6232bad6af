"""Locking querysets of the cards app (docs/contributing.md).

Lock order everywhere: card rows (by id) before member rows, the order in which a purchase
on a card (card, then the ledger's member lock) takes them.

No `select_related` on a locking query: when the lock had to wait, PostgreSQL re-reads the
locked card row as committed meanwhile but evaluates a join against the statement's older
snapshot, so a member enrolled by the transaction we waited for would come back as NULL.
The member is read by a later statement instead (it sees what that transaction committed).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from loyalty.lock_objects import member_for_update  # noqa: F401  (the one member lock, re-exported)
from loyalty.models import Program

from .models import Card


def card_by_number_for_update(*, program: Program, number: str) -> QuerySet[Card]:
    """The card with this (normalized) number in `program`, locked."""
    return Card.objects.select_for_update().filter(program=program, number=number)


def cards_for_update(ids: Iterable[int]) -> QuerySet[Card]:
    """Cards by id, locked in id order (replacing a card with a stock card locks two)."""
    return Card.objects.select_for_update().filter(pk__in=list(ids)).order_by("pk")
