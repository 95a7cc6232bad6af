"""Automations: event or schedule -> conditions -> actions. (Skeleton: the implementation follows.)"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass
class AutomationsResult:
    automations: int = 0
    runs: int = 0


def automations_run(*, now: dt.datetime) -> AutomationsResult:
    """The daily automations as of `now` (idempotent: at most once per member per period)."""
    return AutomationsResult()


def automations_on_event(
    *, trigger: str, member_id: int, activity_type: str = "", now: dt.datetime | None = None
) -> None:
    """An event happened to a member (after commit): run the program's automations it triggers."""
    return None
