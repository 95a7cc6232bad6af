"""Celery task of the dashboard: the roll-ups, run by beat every hour (rolling up each
program's finished days once; see dashboard/migrations/0001_daily_rollups.py)."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from . import rollups


@shared_task(name="dashboard.rollup_stats")
def rollup_stats_task(now: str | None = None) -> dict[str, int]:
    moment = dt.datetime.fromisoformat(now) if now else timezone.now()
    results = rollups.rollup_all(now=moment)
    return {r.program: r.days for r in results}
