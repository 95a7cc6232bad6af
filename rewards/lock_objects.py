"""Locking querysets of the rewards app (STYLE.md rule 5). Lock order everywhere: the coupon,
then the member, then the reward, so concurrent redemptions and cancellations cannot deadlock."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.lock_objects import member_for_update  # noqa: F401  (the one member lock, re-exported)

from .models import Redemption


def redemption_for_update(*, program_id: int, code: str) -> QuerySet[Redemption]:
    return (
        Redemption.objects.select_for_update(of=("self",))
        .select_related("reward")
        .filter(program_id=program_id, code=code)
    )
