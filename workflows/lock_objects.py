"""Locking querysets of the workflows app (STYLE.md rule 5)."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.lock_objects import member_for_update  # noqa: F401  (the one member lock, re-exported)

from .models import Referral


def pending_referral_for_update(*, friend_id: int) -> QuerySet[Referral]:
    """The friend's pending referral, locked before the payout (locked after the friend's member
    row and before the referrer's, so payouts of one referrer's friends queue in one order)."""
    return Referral.objects.select_for_update().filter(friend_id=friend_id, status=Referral.Status.PENDING)
