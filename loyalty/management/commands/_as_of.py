"""The `--now <ISO time>` option every scheduled command takes (docs/architecture.md: Schedules)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone


def add_now_argument(parser: CommandParser) -> None:
    parser.add_argument("--now", help="Run as of this ISO 8601 time (with offset; default: the current time).")


def parse_now(value: str | None) -> dt.datetime:
    if not value:
        return timezone.now()
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"--now: {value!r} is not an ISO 8601 time.") from exc
    if timezone.is_naive(moment):
        raise CommandError("--now needs a time zone offset, e.g. 2026-01-31T00:00:00+00:00.")
    return moment
