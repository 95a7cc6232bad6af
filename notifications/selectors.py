"""Reads of the notifications app."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint


def endpoints_subscribed(*, program_id: int, event_types: set[str]) -> list[WebhookEndpoint]:
    """The program's active endpoints subscribed to any of `event_types`. 1 query (partial
    index `webhook_endpoint_active`); every receiver asks it first, so events nobody listens
    to cost this one look-up and nothing else."""
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
