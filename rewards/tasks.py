"""Celery tasks of the rewards app: thin, idempotent wrappers of the services."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from . import services


@shared_task(name="rewards.expire_coupons")
def expire_coupons_task(now: str | None = None) -> dict[str, int]:
    moment = dt.datetime.fromisoformat(now) if now else timezone.now()
    result = services.coupons_expire(now=moment)
    return {"coupons": result.coupons, "refunded": result.refunded, "points": result.points}
