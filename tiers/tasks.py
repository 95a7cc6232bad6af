"""Celery tasks of the tiers app: thin, idempotent wrappers of the set-based services."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from . import services


@shared_task(name="tiers.evaluate_tiers")
def evaluate_tiers_task(now: str | None = None, chunk_size: int = 20_000) -> dict[str, int]:
    moment = dt.datetime.fromisoformat(now) if now else timezone.now()
    result = services.tiers_evaluate(now=moment, chunk_size=chunk_size)
    return {
        "members": result.members,
        "upgrades": result.upgrades,
        "downgrades": result.downgrades,
        "manual_expired": result.manual_expired,
    }
