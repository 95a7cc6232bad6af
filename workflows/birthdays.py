"""Birthday bonus: once a year per member, on their birthday in the program's time zone.

The nightly job (`award_birthdays`, beat at 00:15 UTC) reports a `birthday` activity for each
member whose birthday is a local day of the last `lookback_days` days up to today, so the
program's birthday rules (the built-in "Birthday bonus" or the merchant's own) pay. Each
activity carries the idempotency key `birthday:<member id>:<year>` and is dated at the start
of the local birthday, so a second run, or a later run looking back over the same days, is a
replay that posts nothing: once a year, whatever the schedule.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import ExtractDay, ExtractMonth

from loyalty import errors
from loyalty.models import Member, Program

from . import services, signals
from .models import EarningRule

logger = logging.getLogger(__name__)

DEFAULT_LOOKBACK_DAYS = 3


@dataclass
class BirthdayResult:
    """What a run did. `members`: birthdays reported now (their points in `points`);
    `already`: birthdays reported by an earlier run (replays, nothing posted); `blocked`:
    blocked members skipped; `errors`: members whose report failed (logged)."""

    programs: int = 0
    members: int = 0
    points: int = 0
    already: int = 0
    blocked: int = 0
    errors: int = 0


def birthday_days(*, today: dt.date, lookback_days: int) -> dict[tuple[int, int], dt.date]:
    """The (month, day) birthdays celebrated on the local days `today - lookback_days ..
    today`, each with the day it is celebrated on. A 29 February birthday is celebrated on
    28 February in a year without one. Pure; no query."""
    days: dict[tuple[int, int], dt.date] = {}
    for back in range(lookback_days, -1, -1):
        day = today - dt.timedelta(days=back)
        days[(day.month, day.day)] = day
        if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
            days[(2, 29)] = day
    return days


def birthday_candidates(*, program: Program, days: dict[tuple[int, int], dt.date]) -> QuerySet[Member]:
    """The program's members with a birthday (month, day) among `days` who were already members
    on the day it is celebrated, with `b_month`/`b_day` annotated. An OR of (month, day) pairs
    on the functional index `member_birthday_day` (program, month, day): never a scan of all
    members."""
    pairs = Q()
    for (month, day), celebrated in days.items():
        next_day = program.start_of_day(celebrated + dt.timedelta(days=1))
        pairs |= Q(b_month=month, b_day=day, enrolled_at__lt=next_day)
    return (
        Member.objects.filter(program=program, birthday__isnull=False)
        .annotate(b_month=ExtractMonth("birthday"), b_day=ExtractDay("birthday"))
        .filter(pairs)
        .order_by("id")
    )


def _candidates(*, program: Program, days: dict[tuple[int, int], dt.date]) -> list[tuple[int, dt.date, str]]:
    """(member id, celebrated day, status) of `birthday_candidates`: one query, ids only (a
    few bytes per member, ~27,000 a day at 10 million members)."""
    rows = birthday_candidates(program=program, days=days).values_list("id", "b_month", "b_day", "status")
    return [(member_id, days[(month, day)], status) for member_id, month, day, status in rows]


def _award_one(*, program: Program, member_id: int, day: dt.date, now: dt.datetime, result: BirthdayResult) -> None:
    """Report one member's birthday in its own (sub)transaction, so a failure undoes only it."""
    try:
        with transaction.atomic():
            report = services.activity_report(
                program=program,
                member=Member(pk=member_id, program=program),
                type="birthday",
                occurred_at=program.start_of_day(day),
                idempotency_key=f"birthday:{member_id}:{day.year}",
                now=now,
                context={"announced_by": "birthday"},
            )
            if not report.replayed and report.points > 0:
                # The birthday email, written with the points (once: a replay does not get here).
                signals.birthday_awarded_in_transaction.send(
                    sender=Member,
                    program=program,
                    member_id=member_id,
                    activity=report.activity,
                    points=report.points,
                    day=day,
                )
    except errors.MemberBlocked:  # blocked between the selection and the report
        result.blocked += 1
        return
    except errors.IdempotencyConflict:  # a concurrent run reported it first
        result.already += 1
        return
    except Exception:
        logger.exception("award_birthdays: member %s of program %s failed", member_id, program.slug)
        result.errors += 1
        return
    if report.replayed:
        result.already += 1
    else:
        result.members += 1
        result.points += report.points


def birthdays_award(
    *, now: dt.datetime, lookback_days: int = DEFAULT_LOOKBACK_DAYS, program: Program | None = None
) -> BirthdayResult:
    """Report a `birthday` activity for every active member whose birthday falls on a local
    day (program time zone) within [today - lookback_days, today], in every program (or only
    `program`) with an active birthday rule. Idempotent (see the module docstring).

    The activity is dated at the start of the local birthday: a run that catches up a missed
    night dates the points as the birthday itself, and every run of the year sends the same
    request, which is what makes it a replay rather than a conflict. A member who enrolled
    after the day is skipped (they were no member on their birthday). Blocked members and a
    member whose report fails are counted and logged; the run goes on. Each member's report is
    its own transaction. Queries: 1 for the programs, 1 per program for the candidates, then
    the activity service's per member."""
    if lookback_days < 0:
        raise errors.InvalidInput("lookback_days must not be negative.", field="lookback_days")
    if now.tzinfo is None:
        raise errors.InvalidInput("now must carry a time zone.", field="now")
    rules = EarningRule.objects.filter(trigger="birthday", is_active=True)
    if program is not None:
        rules = rules.filter(program=program)
    programs = Program.objects.filter(pk__in=rules.values("program_id")).order_by("id")
    result = BirthdayResult()
    for prog in programs:
        result.programs += 1
        days = birthday_days(today=prog.local_date(now), lookback_days=lookback_days)
        for member_id, day, status in _candidates(program=prog, days=days):
            if status == Member.Status.BLOCKED:
                result.blocked += 1
                continue
            _award_one(program=prog, member_id=member_id, day=day, now=now, result=result)
    logger.info(
        "award_birthdays as of %s: %s birthdays, %s points, %s already, %s blocked, %s errors",
        now.isoformat(),
        result.members,
        result.points,
        result.already,
        result.blocked,
        result.errors,
    )
    return result
