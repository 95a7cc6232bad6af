"""Points held for review (docs/fraud.md): an earn posting whose lots carry `HELD_UNTIL` as
their availability date stays pending until a reviewer decides. Releasing makes the lots
available now; rejecting takes what is still held back with a reversal entry (never a
deletion). Both post through `points_post` under the member's lock, like every ledger write.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from loyalty.models import LedgerEntry, Program

from .posting import HELD_UNTIL, PostResult, _Posting, points_post

__all__ = ["HELD_UNTIL", "points_hold_reject", "points_hold_release"]


def points_hold_release(
    *, program: Program, member_id: int, activity_id: int, now: dt.datetime | None = None, actor_id: int | None = None
) -> tuple[PostResult, int]:
    """Make the held lots of `activity_id` available now: (the posting, the points moved).
    Writes no entry (like the release of pending points); moves 0 when nothing is held any
    more (refunded or expired meanwhile). Joins the caller's transaction."""
    moved: list[int] = []

    def work(p: _Posting) -> None:
        moved.append(p.release_held(member_id, activity_id))

    result = points_post(
        program=program,
        member_ids=[member_id],
        operation="hold_release",
        payload={"member": member_id, "activity": activity_id},
        work=work,
        now=now or timezone.now(),
        actor_id=actor_id,
    )
    return result, moved[0]


def points_hold_reject(
    *,
    program: Program,
    member_id: int,
    activity_id: int,
    reason: str,
    now: dt.datetime | None = None,
    actor_id: int | None = None,
) -> tuple[PostResult, int]:
    """Take back what is still held of `activity_id`'s lots with one reversal entry (the
    activity's own lots first, so exactly the held points): (the posting, the points reversed).
    Nothing is written when nothing is held any more. Joins the caller's transaction."""
    reversed_: list[int] = []

    def work(p: _Posting) -> None:
        points = p.held_remaining(member_id, activity_id)
        reversed_.append(points)
        if points > 0:
            p.debit(
                member_id,
                kind=LedgerEntry.Kind.REVERSAL,
                points=points,
                allow_debt=False,
                include_pending=True,
                first_lots_of_activity=activity_id,
                reason=reason[:255],
                activity_id=activity_id,
            )

    result = points_post(
        program=program,
        member_ids=[member_id],
        operation="hold_reject",
        payload={"member": member_id, "activity": activity_id},
        work=work,
        now=now or timezone.now(),
        actor_id=actor_id,
    )
    return result, reversed_[0]
