"""Locking querysets of the rewards app (STYLE.md rule 5). Lock order everywhere: the coupon,
then the member, then the reward, so concurrent redemptions and cancellations cannot deadlock."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.models import Member

from .models import Redemption


def member_for_update(*, member_id: int) -> QuerySet[Member]:
    """The member row, locked while the per-member limit is counted (the ledger's own lock on
    the same row is then re-entrant)."""
    return Member.objects.select_for_update().filter(pk=member_id)


def redemption_for_update(*, program_id: int, code: str) -> QuerySet[Redemption]:
    return (
        Redemption.objects.select_for_update(of=("self",))
        .select_related("reward")
        .filter(program_id=program_id, code=code)
    )
