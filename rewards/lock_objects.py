"""Locking querysets of the rewards app (docs/contributing.md). Lock order everywhere: the coupon,
then the member, then the reward, so concurrent redemptions and cancellations cannot deadlock."""

from __future__ import annotations

from django.db.models import Exists, QuerySet, Value

from loyalty.lock_objects import member_for_update
from loyalty.models import IdempotencyRecord, Member, Program

from .models import Redemption


def member_for_update_seeing_key(*, member_id: int, program: Program, key: str | None) -> QuerySet[Member]:
    """The member row, locked, with `key_seen`: whether the idempotency store holds `key`
    for `program` (one statement)."""
    seen = Exists(IdempotencyRecord.objects.filter(program=program, key=key)) if key else Value(False)
    return member_for_update(member_id=member_id).annotate(key_seen=seen)


def redemption_for_update(*, program_id: int, code: str) -> QuerySet[Redemption]:
    return (
        Redemption.objects.select_for_update(of=("self",))
        .select_related("reward")
        .filter(program_id=program_id, code=code)
    )
