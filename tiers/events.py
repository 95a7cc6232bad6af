"""The who/what/when rows of tier changes (docs/contributing.md) and the `tier_changed` signal."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import transaction

from loyalty.models import Program

from .models import Tier, TierChange
from .signals import tier_changed, tier_changed_in_transaction


def tier_changed_event(
    *,
    program: Program,
    member_id: int,
    from_tier: Tier | None,
    to_tier: Tier | None,
    kind: str,
    at: dt.datetime,
    metric_value: Decimal | None = None,
    actor: Any = None,
    reason: str = "",
    notify_member: bool = True,
) -> TierChange:
    """Write one TierChange, send `tier_changed_in_transaction` at once and `tier_changed` once
    the transaction commits. 1 query (+ the in-transaction receivers')."""
    change = TierChange.objects.create(
        member_id=member_id,
        from_tier=from_tier,
        to_tier=to_tier,
        kind=kind,
        metric_value=metric_value,
        actor=actor if getattr(actor, "pk", None) else None,
        at=at,
        reason=reason,
    )
    announce_tier_changes(program=program, changes=[change], notify_member=notify_member)
    return change


def announce_tier_changes(*, program: Program, changes: list[TierChange], notify_member: bool = True) -> None:
    """Send `tier_changed_in_transaction` once for the batch now (inside the transaction that
    wrote the changes) and `tier_changed` for each change after commit (also used by the
    set-based run)."""
    if not changes:
        return
    if tier_changed_in_transaction.has_listeners(TierChange):
        tier_changed_in_transaction.send(
            sender=TierChange, program=program, changes=changes, notify_member=notify_member
        )

    def send() -> None:
        for change in changes:
            tier_changed.send(sender=TierChange, program=program, member_id=change.member_id, change=change)

    transaction.on_commit(send)
