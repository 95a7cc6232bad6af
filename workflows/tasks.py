"""Celery tasks of the workflows app: thin, idempotent wrappers of the services."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from . import automations, birthdays


def _moment(now: str | None) -> dt.datetime:
    return dt.datetime.fromisoformat(now) if now else timezone.now()


@shared_task(name="workflows.award_birthdays")
def award_birthdays_task(now: str | None = None) -> dict[str, int]:
    result = birthdays.birthdays_award(now=_moment(now))
    return {"members": result.members, "points": result.points}


@shared_task(name="workflows.run_workflows")
def run_workflows_task(now: str | None = None) -> dict[str, int]:
    result = automations.automations_run(now=_moment(now))
    return {"automations": result.automations, "runs": result.runs}
