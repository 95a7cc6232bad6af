"""Celery tasks of the loyalty core: thin, idempotent wrappers of the set-based services."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from . import services


def _as_of(now: str | None) -> dt.datetime:
    return dt.datetime.fromisoformat(now) if now else timezone.now()


@shared_task(name="loyalty.expire_points")
def expire_points_task(now: str | None = None, chunk_size: int = 20_000) -> dict[str, int]:
    result = services.points_expire(now=_as_of(now), chunk_size=chunk_size)
    return {"lots": result.lots, "points": result.points, "members": result.members}


@shared_task(name="loyalty.release_pending_points")
def release_pending_points_task(now: str | None = None, chunk_size: int = 20_000) -> dict[str, int]:
    result = services.points_release(now=_as_of(now), chunk_size=chunk_size)
    return {"lots": result.lots, "points": result.points, "members": result.members}
