"""Locking querysets of the workflows app (STYLE.md rule 5)."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.models import Member


def member_for_update(*, member_id: int) -> QuerySet[Member]:
    """The member row, locked: caps are read and awards written under it, so two activities of
    one member at once cannot both take the last points of a cap. The ledger's own lock on the
    same row is then re-entrant (same transaction)."""
    return Member.objects.select_for_update().filter(pk=member_id)
