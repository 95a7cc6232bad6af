"""Which events queue which member emails (docs/emails.md, `email_kinds`).

The receivers listen to the `*_in_transaction` signals of the lower apps, so each message row
is written in the transaction of its event (`emails.message_queue`): one short statement, and
nothing at all when the program does not send the kind (settings cached per process). They
must not swallow database errors: an outbox row that cannot be written rolls its event back
("nothing lost").
"""

from __future__ import annotations

import logging
from typing import Any

from anymail.signals import tracking as anymail_tracking
from django.dispatch import receiver

from loyalty.models import LedgerEntry
from loyalty.signals import member_enrolled_in_transaction, points_posted_in_transaction

from . import email_context, emails
from .email_kinds import EmailKind

Kind = LedgerEntry.Kind
logger = logging.getLogger(__name__)


@receiver(member_enrolled_in_transaction, dispatch_uid="notifications.email_welcome")
def on_member_enrolled(sender: Any, *, program: Any, member: Any, channel: str, **kwargs: Any) -> None:
    emails.message_queue(program_id=program.id, member_id=member.id, kind=EmailKind.WELCOME, source="enrolled", data={})


@receiver(points_posted_in_transaction, dispatch_uid="notifications.email_points")
def on_points_posted(
    sender: Any, *, program: Any, member_id: int, entries: list[LedgerEntry], context: dict[str, Any], **kwargs: Any
) -> None:
    """An activity's earn entries: one points_earned message per activity, summing them."""
    by_activity: dict[int, list[LedgerEntry]] = {}
    for entry in entries:
        if entry.kind == Kind.EARN and entry.activity_id is not None and entry.points > 0:
            by_activity.setdefault(entry.activity_id, []).append(entry)
    for activity_id, earned in by_activity.items():
        emails.message_queue(
            program_id=program.id,
            member_id=member_id,
            kind=EmailKind.POINTS_EARNED,
            source=f"activity:{activity_id}",
            data={
                "points": sum(e.points for e in earned),
                "entries": [{"points": e.points, "reason": e.reason} for e in earned],
                "activity_id": activity_id,
            },
        )


@email_context.enricher(EmailKind.POINTS_EARNED)
def _earned_activity(facts: dict[str, Any], program: Any, member: Any) -> dict[str, Any]:
    """The activity behind a points_earned message (read when the message is sent)."""
    from loyalty.models import Activity

    activity = Activity.objects.filter(pk=facts.get("activity_id")).first()
    if activity is not None:
        facts["activity"] = {
            "type": activity.type,
            "order_id": activity.order_id,
            "amount": activity.amount,
            "occurred_on": program.local_date(activity.occurred_at).isoformat(),
        }
    return facts


@receiver(anymail_tracking, dispatch_uid="notifications.email_tracking")
def on_esp_tracking(sender: Any, *, event: Any, esp_name: str, **kwargs: Any) -> None:
    """The ESP's tracking webhook (anymail checked its signature): update the message's status;
    a hard bounce or a complaint suppresses the address (`emails.message_tracked`)."""
    outcome = emails.message_tracked(
        event_type=event.event_type,
        outbox_id=(event.metadata or {}).get("outbox_id"),
        esp_message_id=event.message_id or "",
        recipient=event.recipient or "",
        description=event.description or event.mta_response or "",
        at=event.timestamp,
    )
    if outcome.message_id is None and event.event_type in emails.TRACKING_STATUS:
        logger.info("%s %s event for an unknown message %s", esp_name, event.event_type, event.message_id)
