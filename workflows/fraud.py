"""Fraud limits (docs/fraud.md): a program's velocity limits on members, the review queue of
activities whose points are held, and the reviewers' decisions.

`activity_report` asks `velocity_check` under the member's lock (so concurrent activities of
one member are counted one after the other and none escapes a limit), posts a tripped
activity's points with `HELD_UNTIL` as their availability date and records a `ReviewHold`
(`hold_record`). A reviewer then releases (`review_hold_release`: the points become available
now) or rejects (`review_hold_reject`: what is still held is reversed) the hold, once: the
hold's row is locked, so two reviewers deciding at once make one decision.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from cards.models import Card, CardEvent
from loyalty import errors
from loyalty import services as ledger
from loyalty.models import Activity, LedgerEntry, Member, Program, StaffAction
from loyalty.presence import TtlCache

from .models import FraudLimits, ReviewHold

Reason = ReviewHold.Reason
DECIDE_PERMISSION = "workflows.decide_reviewhold"

# The active limits per program, kept 5 s per process and forgotten when they change in this
# process (workflows.receivers): every activity reads them. None: no active limit.
_limits = TtlCache[FraudLimits | None](ttl=5.0)


def limits_forget(*args: Any, **kwargs: Any) -> None:
    _limits.clear()


def active_limits(*, program: Program) -> FraudLimits | None:
    """The program's limits when active and at least one is set. Queries: none most of the
    time (kept 5 s per process), else 1."""

    def load() -> FraudLimits | None:
        found = FraudLimits.objects.filter(program_id=program.pk, is_active=True).first()
        if found is None:
            return None
        values = (
            found.max_activities_per_day,
            found.max_points_per_day,
            found.max_refunds_per_month,
            found.max_members_per_card,
            found.max_same_amount_per_day,
        )
        return found if any(v is not None for v in values) else None

    return _limits.get(program.pk, load)


def is_backdated(*, program: Program, occurred_at: dt.datetime, reported_at: dt.datetime) -> bool:
    """An activity is backdated when it occurred on an earlier calendar day (program time zone)
    than the day it was reported."""
    return program.local_date(occurred_at) < program.local_date(reported_at)


def availability(*, program: Program, occurred_at: dt.datetime, reported_at: dt.datetime) -> dt.datetime | None:
    """The availability date of a backdated activity's points: the program's pending days
    (its return window) counted from when it was reported, never earlier than counted from
    when it occurred. None: the ledger's default (counted from `occurred_at`)."""
    if not is_backdated(program=program, occurred_at=occurred_at, reported_at=reported_at):
        return None
    return max(program.availability_for(reported_at), program.availability_for(occurred_at))


@dataclass(frozen=True)
class Verdict:
    """The limits an activity passed: the first one is the hold's reason."""

    reasons: list[str]
    details: list[str]

    @property
    def reason(self) -> str:
        return self.reasons[0]

    @property
    def detail(self) -> str:
        return "; ".join(self.details)[:255]


def _bounds(program: Program, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime, dt.datetime, dt.datetime]:
    day = program.local_date(moment)
    month = day.replace(day=1)
    next_month = (month + dt.timedelta(days=32)).replace(day=1)
    return (
        program.start_of_day(day),
        program.start_of_day(day + dt.timedelta(days=1)),
        program.start_of_day(month),
        program.start_of_day(next_month),
    )


def velocity_check(
    *, program: Program, member_id: int, activity: Activity, points: int, now: dt.datetime
) -> Verdict | None:
    """Which of the program's limits this activity (stored already, its `points` not posted
    yet) makes the member pass, counted by when activities were reported (program time
    zone), so backdating changes nothing. Call it under the member's lock. Queries: the
    limits (kept 5 s) + 1 when any is active."""
    limits = active_limits(program=program)
    if limits is None:
        return None
    day_start, day_end, month_start, month_end = _bounds(program, now)
    act, entry = Activity._meta.db_table, LedgerEntry._meta.db_table
    parts, params = (
        [],
        {
            "m": member_id,
            "d0": day_start,
            "d1": day_end,
            "m0": month_start,
            "m1": month_end,
            "amount": activity.amount,
        },
    )
    # Each count is on the member's own rows (indexes on member), in one statement.
    parts.append(
        f"(SELECT count(*) FROM {act} WHERE member_id = %(m)s AND type <> 'refund' "
        "AND reported_at >= %(d0)s AND reported_at < %(d1)s)"
        if limits.max_activities_per_day is not None
        else "0"
    )
    parts.append(
        f"(SELECT coalesce(sum(points), 0) FROM {entry} WHERE member_id = %(m)s AND kind = 'earn' "
        "AND created_at >= %(d0)s AND created_at < %(d1)s)"
        if limits.max_points_per_day is not None
        else "0"
    )
    parts.append(
        f"(SELECT count(*) FROM {act} WHERE member_id = %(m)s AND type = 'refund' "
        "AND reported_at >= %(m0)s AND reported_at < %(m1)s)"
        if limits.max_refunds_per_month is not None
        else "0"
    )
    parts.append(
        f"(SELECT coalesce(max(n), 0) FROM (SELECT count(DISTINCT e.member_id) AS n FROM {Card._meta.db_table} c "
        f"JOIN {CardEvent._meta.db_table} e ON e.card_id = c.id WHERE c.member_id = %(m)s GROUP BY c.id) per_card)"
        if limits.max_members_per_card is not None
        else "0"
    )
    repeated = limits.max_same_amount_per_day is not None and activity.type == Activity.Type.PURCHASE
    parts.append(
        f"(SELECT count(*) FROM {act} WHERE member_id = %(m)s AND type = 'purchase' AND amount = %(amount)s "
        "AND reported_at >= %(d0)s AND reported_at < %(d1)s)"
        if repeated and activity.amount is not None
        else "0"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}", params)
        activities, earned, refunds, card_members, same_amount = (int(v) for v in cursor.fetchone())
    reasons: list[str] = []
    details: list[str] = []
    if limits.max_activities_per_day is not None and activities > limits.max_activities_per_day:
        reasons.append(Reason.ACTIVITIES_PER_DAY)
        details.append(f"{activities} activities today (limit {limits.max_activities_per_day})")
    if limits.max_points_per_day is not None and earned + points > limits.max_points_per_day:
        reasons.append(Reason.POINTS_PER_DAY)
        details.append(f"{earned + points} points today (limit {limits.max_points_per_day})")
    if limits.max_refunds_per_month is not None and refunds > limits.max_refunds_per_month:
        reasons.append(Reason.REFUNDS_PER_MONTH)
        details.append(f"{refunds} refunds this month (limit {limits.max_refunds_per_month})")
    if limits.max_members_per_card is not None and card_members > limits.max_members_per_card:
        reasons.append(Reason.MEMBERS_PER_CARD)
        details.append(f"a card of {card_members} members (limit {limits.max_members_per_card})")
    if repeated and limits.max_same_amount_per_day is not None and same_amount > limits.max_same_amount_per_day:
        reasons.append(Reason.SAME_AMOUNT)
        amount = Decimal(activity.amount or 0)
        details.append(f"{same_amount} purchases of {amount} today (limit {limits.max_same_amount_per_day})")
    return Verdict(reasons=reasons, details=details) if reasons else None


def hold_record(
    *, program: Program, member_id: int, activity: Activity, verdict: Verdict, points: int, now: dt.datetime
) -> ReviewHold:
    """The review queue's row for an activity whose points were just posted held. Joins the
    caller's transaction (the activity's)."""
    hold = ReviewHold(
        program=program,
        member_id=member_id,
        activity=activity,
        reason=verdict.reason,
        detail=verdict.detail,
        points=points,
        created_at=now,
    )
    hold.save(force_insert=True)
    return hold


# ---------------------------------------------------------------------------------------------
# Decisions


def can_decide(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(DECIDE_PERMISSION))


@dataclass
class HoldDecision:
    hold: ReviewHold
    points: int = 0  # released or reversed now
    already: bool = False  # the same decision was made before (a twin click): nothing done


def _hold_locked(hold_id: int, program_ids: Any) -> ReviewHold:
    hold = (
        ReviewHold.objects.select_for_update(of=("self",))
        .select_related("program", "member")
        .filter(pk=hold_id)
        .first()
    )
    if hold is None or (program_ids is not None and hold.program_id not in set(program_ids)):
        raise errors.NotFound("No such review hold.", hold_id=hold_id)
    return hold


def _decide(
    *, hold_id: int, reviewer: Any, status: str, note: str, program_ids: Any, now: dt.datetime | None
) -> HoldDecision:
    if not can_decide(reviewer):
        raise errors.NotAllowed("You may not release or reject held points.")
    note = (note or "").strip()
    if status == ReviewHold.Status.REJECTED and not note:
        raise errors.ReasonRequired("A rejection needs a reason.", field="note")
    now = now or timezone.now()
    with transaction.atomic():
        # The hold's lock first, then (in the posting) the member's: one decision per hold.
        hold = _hold_locked(hold_id, program_ids)
        if hold.status == status:
            return HoldDecision(hold=hold, already=True)
        if hold.status != ReviewHold.Status.PENDING:
            raise errors.AlreadyDecided(f"This hold was {hold.status} already.", hold_id=hold.pk)
        if status == ReviewHold.Status.RELEASED:
            _result, points = ledger.points_hold_release(
                program=hold.program,
                member_id=hold.member_id,
                activity_id=hold.activity_id,
                now=now,
                actor_id=reviewer.pk,
            )
            action = StaffAction.Action.HOLD_RELEASE
        else:
            _result, points = ledger.points_hold_reject(
                program=hold.program,
                member_id=hold.member_id,
                activity_id=hold.activity_id,
                reason=f"Rejected after review: {note}",
                now=now,
                actor_id=reviewer.pk,
            )
            action = StaffAction.Action.HOLD_REJECT
        hold.status = status
        hold.decided_at = now
        hold.decided_by = reviewer
        hold.note = note[:255]
        hold.points_moved = points
        hold.save(update_fields=["status", "decided_at", "decided_by", "note", "points_moved"])
        ledger.staff_action_record(
            actor=reviewer,
            action=action,
            program=hold.program,
            member=hold.member,
            reason=note,
            details={
                "hold": hold.pk,
                "activity": hold.activity_id,
                "reason": hold.reason,
                "points_held": hold.points,
                "points": points,
            },
            now=now,
        )
    return HoldDecision(hold=hold, points=points)


def review_hold_release(
    *, hold_id: int, reviewer: Any, note: str = "", program_ids: Any = None, now: dt.datetime | None = None
) -> HoldDecision:
    """Release a waiting hold: its points that are still held become available now, audited.
    `program_ids`: the programs the reviewer may act on (None: all; another's: NotFound).
    Refusals (nothing written): `NotAllowed` without `workflows.decide_reviewhold`,
    `AlreadyDecided` for a rejected hold; a released hold again: `already`."""
    return _decide(
        hold_id=hold_id,
        reviewer=reviewer,
        status=ReviewHold.Status.RELEASED,
        note=note,
        program_ids=program_ids,
        now=now,
    )


def review_hold_reject(
    *, hold_id: int, reviewer: Any, note: str, program_ids: Any = None, now: dt.datetime | None = None
) -> HoldDecision:
    """Reject a waiting hold with a reason (required): what is still held is reversed through
    the ledger (a reversal entry), audited. Same refusals as `review_hold_release`."""
    return _decide(
        hold_id=hold_id,
        reviewer=reviewer,
        status=ReviewHold.Status.REJECTED,
        note=note,
        program_ids=program_ids,
        now=now,
    )


def member_is_in_review(*, member: Member) -> bool:
    """Whether the member has a hold waiting. Queries: 1."""
    return ReviewHold.objects.filter(member_id=member.pk, status=ReviewHold.Status.PENDING).exists()
