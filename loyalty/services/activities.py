"""Activities: what a member did, stored for the earning rules (the rules of `workflows`
decide what it earns; the points are posted by loyalty.services.points)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from loyalty import errors
from loyalty.inserts import insert_unless_conflict
from loyalty.models import Activity, Member, Program

from .checks import check_aware, full_clean


def activity_record(
    *,
    program: Program,
    member: Member,
    type: str,
    occurred_at: dt.datetime,
    order_id: str = "",
    amount: Decimal | None = None,
    currency: str = "",
    channel: str = "",
    items: Iterable[dict[str, Any]] = (),
    data: dict[str, Any] | None = None,
    reported_at: dt.datetime | None = None,
) -> Activity:
    """Store an activity (the rules of `workflows` decide what it earns). `reported_at`: when
    it was reported (the caller's `now`; default the clock)."""
    check_aware(occurred_at, "occurred_at")
    if member.program_id != program.id:
        raise errors.MemberNotFound("The member belongs to another program.", member_id=member.pk)
    if type == Activity.Type.PURCHASE and not order_id:
        raise errors.InvalidInput("A purchase needs an order id.", field="order_id")
    if amount is not None and Decimal(amount) < 0:
        raise errors.InvalidInput("The amount must not be negative.", field="amount")
    activity = Activity(
        program=program,
        member=member,
        type=type,
        occurred_at=occurred_at,
        order_id=order_id,
        amount=amount,
        currency=currency or (program.currency if amount is not None else ""),
        channel=channel,
        items=list(items),
        data=data or {},
    )
    if reported_at is not None:
        activity.reported_at = reported_at
    # The member and program are objects already; the database checks the constraints
    # (an IntegrityError below), so validation stays free of queries.
    full_clean(activity, exclude=["program", "member"], validate_unique=False, validate_constraints=False)
    # One statement, no savepoint: a second purchase of an order inserts nothing (the unique
    # `activity_unique_purchase_order`) and is refused with nothing written.
    if not insert_unless_conflict(activity):
        raise errors.Conflict(f"Order {order_id!r} was already reported.", order_id=order_id)
    return activity
