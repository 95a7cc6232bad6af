"""Built-in activities: ready-made earning rules a program switches on, and the signup bonus
on enrolment. (Skeleton: the implementation follows.)"""

from __future__ import annotations

import datetime as dt

from loyalty.models import Member, Program

from .models import EarningRule


def builtin_rules_install(*, program: Program) -> list[EarningRule]:
    """Create the program's built-in rules (inactive) that it does not have yet."""
    return []


def signup_bonus_award(*, member: Member, now: dt.datetime | None = None) -> None:
    """A newly enrolled member's `signup` activity, when the program has an active signup rule."""
    return None
