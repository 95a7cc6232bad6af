"""Reads of the notifications app."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.presence import PresenceCache

from .models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint

# "Does any active endpoint of program P want one of these events?", remembered a few seconds
# per process (a nightly tier run sends one tier_changed per member); forgotten when an
# endpoint changes in this process (notifications.receivers).
_listening = PresenceCache(ttl=5.0)


def endpoints_forget() -> None:
    _listening.clear()


def endpoints_subscribed(*, program_id: int, event_types: set[str]) -> list[WebhookEndpoint]:
    """The program's active endpoints subscribed to any of `event_types`. Every receiver asks
    it first, so events nobody listens to cost nothing: "nobody listens" is remembered for 5 s
    per process; otherwise 1 query (partial index `webhook_endpoint_active`)."""
    kinds = sorted(event_types)

    def anyone() -> bool:
        return WebhookEndpoint.objects.filter(program_id=program_id, is_active=True, events__overlap=kinds).exists()

    if not _listening.get((program_id, tuple(kinds)), anyone):
        return []
    return list(
        WebhookEndpoint.objects.filter(program_id=program_id, is_active=True, events__overlap=sorted(event_types)).only(
            "id", "program_id", "events", "created_at", "is_active"
        )
    )


def deliveries_for_log() -> QuerySet[WebhookDelivery]:
    """The delivery log (admin): each delivery with its endpoint and program."""
    return WebhookDelivery.objects.select_related("endpoint", "endpoint__program")


def attempts_of(*, delivery_id: int) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(delivery_id=delivery_id).order_by("number")
