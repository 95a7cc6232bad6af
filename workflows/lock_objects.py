"""Locking querysets of the workflows app (STYLE.md rule 5)."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.models import Member

from .models import Referral


def member_for_update(*, member_id: int) -> QuerySet[Member]:
    """The member row, locked: caps are read and awards written under it, so two activities of
    one member at once cannot both take the last points of a cap. The ledger's own lock on the
    same row is then re-entrant (same transaction)."""
    return Member.objects.select_for_update().filter(pk=member_id)


def pending_referral_for_update(*, friend_id: int) -> QuerySet[Referral]:
    """The friend's pending referral, locked before the payout (locked after the friend's member
    row and before the referrer's, so payouts of one referrer's friends queue in one order)."""
    return Referral.objects.select_for_update().filter(friend_id=friend_id, status=Referral.Status.PENDING)
