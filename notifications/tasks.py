"""Celery tasks of the notifications app: thin wrappers of the services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import shared_task
from django.utils import timezone

from . import email_schedules, emails, events, services


@shared_task(bind=True, name="notifications.deliver_webhook", ignore_result=True)
def deliver_webhook_task(self: Any, delivery_id: int) -> None:
    """One attempt at one delivery; on failure, a Celery retry at the row's next attempt time.

    The schedule lives on the row (`next_attempt_at`), so the periodic `deliver_outbox` sends
    it even if this retry message is lost. Eager mode (no broker) does not retry here: an eager
    retry would run at once, inside the request; `deliver_outbox` does it when it is due."""
    result = services.delivery_attempt(delivery_id=delivery_id)
    if result is not None and result.retry_in is not None and not self.request.is_eager:
        raise self.retry(countdown=result.retry_in.total_seconds(), max_retries=None)


@shared_task(name="notifications.deliver_outbox", ignore_result=True)
def deliver_outbox_task(now: str | None = None, limit: int = 500) -> dict[str, int]:
    moment = dt.datetime.fromisoformat(now) if now else timezone.now()
    result = services.outbox_deliver(now=moment, limit=limit)
    sent = emails.outbox_emails_deliver(now=moment, limit=limit)
    return {
        "attempted": result.attempted,
        "succeeded": result.succeeded,
        "failed": result.failed,
        "emails_attempted": sent.attempted,
        "emails_sent": sent.sent,
        "emails_suppressed": sent.suppressed,
        "emails_failed": sent.failed,
    }


@shared_task(name="notifications.collect_expired_points", ignore_result=True)
def collect_expired_points_task() -> int:
    return events.expired_points_collect()


@shared_task(bind=True, name="notifications.send_email", ignore_result=True)
def send_email_task(self: Any, message_id: int) -> None:
    """One attempt at one queued email; on failure, a Celery retry at the row's next attempt
    time (the schedule is on the row, so `deliver_outbox` sends it even if this retry is lost).
    Eager mode does not retry here (an eager retry would run at once, inside the request)."""
    result = emails.message_send(message_id=message_id)
    if result is not None and result.retry_in is not None and not self.request.is_eager:
        raise self.retry(countdown=result.retry_in.total_seconds(), max_retries=None)


@shared_task(name="notifications.send_emails", ignore_result=True)
def send_emails_task(message_ids: list[int]) -> int:
    """One attempt at each of these queued emails (the rows a schedule wrote in one chunk).
    A failed one keeps its retry time on its row: `deliver_outbox` retries it. Returns how
    many were sent."""
    sent = 0
    for message_id in message_ids:
        result = emails.message_send(message_id=message_id)
        sent += result is not None and result.status == emails.Status.SENT
    return sent


@shared_task(name="notifications.send_expiry_warnings", ignore_result=True)
def send_expiry_warnings_task(now: str | None = None, chunk_size: int = email_schedules.CHUNK_SIZE) -> int:
    moment = dt.datetime.fromisoformat(now) if now else timezone.now()
    return email_schedules.expiry_warnings_send(now=moment, chunk_size=chunk_size).queued


@shared_task(name="notifications.send_point_reminders", ignore_result=True)
def send_point_reminders_task(now: str | None = None, chunk_size: int = email_schedules.CHUNK_SIZE) -> int:
    moment = dt.datetime.fromisoformat(now) if now else timezone.now()
    return email_schedules.point_reminders_send(now=moment, chunk_size=chunk_size).queued


@shared_task(name="notifications.send_tier_at_risk_warnings", ignore_result=True)
def send_tier_at_risk_warnings_task(now: str | None = None, chunk_size: int = email_schedules.CHUNK_SIZE) -> int:
    moment = dt.datetime.fromisoformat(now) if now else timezone.now()
    return email_schedules.tier_at_risk_send(now=moment, chunk_size=chunk_size).queued
