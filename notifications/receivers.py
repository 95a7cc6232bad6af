"""Reactions of the notifications app to the signals of lower apps (docs/contributing.md).

The signals are sent after the sender's transaction committed: a receiver writes its outbox
rows in a short transaction of its own and queues their delivery after that commits. A
failure here is logged and never reaches the sender (its points are posted whatever happens
to a webhook).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from cards.importing import members_imported
from loyalty.signals import demo_loaded, ledger_job_finished, member_enrolled, points_posted
from rewards.signals import redemption_cancelled, redemption_used
from tiers.signals import tier_changed
from workflows.signals import budget_threshold_in_transaction

from . import events, selectors
from .models import WebhookEndpoint

logger = logging.getLogger(__name__)


def _never_raise(func: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except Exception:
            logger.exception("Webhook events of %s were not recorded", func.__name__)

    return wrapper


@receiver(points_posted, dispatch_uid="notifications.on_points_posted")
@_never_raise
def on_points_posted(sender: Any, *, program: Any, member_id: int, entries: list, **kwargs: Any) -> None:
    events.points_posted_events(
        program_id=program.id, member_id=member_id, balance=kwargs.get("balance"), entries=entries
    )


@receiver(member_enrolled, dispatch_uid="notifications.on_member_enrolled")
@_never_raise
def on_member_enrolled(sender: Any, *, program: Any, member: Any, channel: str, **kwargs: Any) -> None:
    events.member_enrolled_events(program_id=program.id, member=member, channel=channel)


@receiver(members_imported, dispatch_uid="notifications.on_members_imported")
@_never_raise
def on_members_imported(sender: Any, *, program: Any, member_ids: list[int], **kwargs: Any) -> None:
    events.members_imported_events(program_id=program.id, member_ids=member_ids)


@receiver(tier_changed, dispatch_uid="notifications.on_tier_changed")
@_never_raise
def on_tier_changed(sender: Any, *, program: Any, member_id: int, change: Any, **kwargs: Any) -> None:
    events.tier_changed_events(program_id=program.id, member_id=member_id, change=change)


@receiver(redemption_used, dispatch_uid="notifications.on_redemption_used")
@_never_raise
def on_redemption_used(sender: Any, *, program: Any, redemption: Any, **kwargs: Any) -> None:
    events.redemption_used_events(program_id=program.id, redemption=redemption)


@receiver(redemption_cancelled, dispatch_uid="notifications.on_redemption_cancelled")
@_never_raise
def on_redemption_cancelled(sender: Any, *, program: Any, redemption: Any, refunded: bool, **kwargs: Any) -> None:
    events.redemption_cancelled_events(program_id=program.id, redemption=redemption, refunded=refunded)


@receiver(budget_threshold_in_transaction, dispatch_uid="notifications.on_budget_threshold")
@_never_raise
def on_budget_threshold(sender: Any, *, program: Any, budget: dict, now: Any, **kwargs: Any) -> None:
    """In the award's transaction (its delivery is queued after commit): a rolled-back award
    sends nothing, and the counter's alert mark commits with the event."""
    events.budget_threshold_events(program_id=program.id, budget=budget, now=now)


@receiver(ledger_job_finished, dispatch_uid="notifications.on_ledger_job_finished")
@_never_raise
def on_ledger_job_finished(sender: Any, *, job: str, lots: int, **kwargs: Any) -> None:
    """The expiry job wrote expire entries: find them (a primary-key range scan) in a task."""
    if job == "expire_points" and lots:
        from .tasks import collect_expired_points_task

        collect_expired_points_task.delay_on_commit()


@receiver(post_save, sender=WebhookEndpoint, dispatch_uid="notifications.endpoint_saved")
@receiver(post_delete, sender=WebhookEndpoint, dispatch_uid="notifications.endpoint_deleted")
def forget_listening(sender: Any, **kwargs: Any) -> None:
    """An endpoint changed: the remembered "nobody listens" answers go."""
    selectors.endpoints_forget()


@receiver(demo_loaded, dispatch_uid="notifications.add_demo_emails")
def add_demo_emails(sender: Any, *, program: Any, now: Any, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: an outbox with a message of every kind (`notifications.demo`), once."""
    from . import demo

    line = demo.demo_emails_load(program=program, now=now)
    if stdout is not None:
        stdout.write(line)
