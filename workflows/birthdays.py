"""Birthday bonus: once a year per member, on their birthday in the program's time zone.
(Skeleton: the implementation follows.)"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass
class BirthdayResult:
    members: int = 0
    points: int = 0


def birthdays_award(*, now: dt.datetime) -> BirthdayResult:
    """Report a `birthday` activity for every member whose birthday it is (idempotent)."""
    return BirthdayResult()
