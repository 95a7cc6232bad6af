"""Outgoing webhooks (docs/api.md "Outgoing webhooks", docs/webhooks.md).

A `WebhookEndpoint` is a merchant's URL subscribed to some events of one program. Every event
for an endpoint becomes one `WebhookDelivery` row, the outbox: its `webhook-id` and its body
are fixed when the row is written, so every retry sends the same bytes under the same id and
receivers can deduplicate on it. Every try leaves a `DeliveryAttempt` row (the delivery log).
All writes go through `notifications.services`.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from loyalty.models import Program

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)


class EventType(models.TextChoices):
    """The events an endpoint can subscribe to (docs/api.md)."""

    MEMBER_ENROLLED = "member.enrolled", "Member enrolled"
    POINTS_EARNED = "points.earned", "Points earned"
    POINTS_REDEEMED = "points.redeemed", "Points redeemed"
    POINTS_EXPIRED = "points.expired", "Points expired"
    POINTS_ADJUSTED = "points.adjusted", "Points adjusted (staff, refund, transfer, returned points)"
    TIER_CHANGED = "tier.changed", "Tier changed"
    REDEMPTION_USED = "redemption.used", "Coupon used"
    REDEMPTION_CANCELLED = "redemption.cancelled", "Coupon cancelled"


# Sent by the admin's "Send test event" button only; no endpoint subscribes to it.
TEST_EVENT = "webhook.test"


def new_secret() -> str:
    """A signing secret in the Standard Webhooks format: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_message_id() -> str:
    """The `webhook-id` of a delivery: unique, fixed for all its retries."""
    return f"msg_{uuid.uuid4().hex}"


class WebhookEndpoint(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500, help_text="https only; must not resolve to a private address.")
    description = models.CharField(max_length=200, blank=True)
    events = ArrayField(
        models.CharField(max_length=40, choices=EventType.choices),
        default=list,
        blank=True,
        help_text="The events sent to this URL.",
    )
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["program", "id"]
        indexes = [
            # Every receiver asks for a program's active endpoints after each event.
            models.Index(fields=["program"], name="webhook_endpoint_active", condition=Q(is_active=True)),
        ]

    def __str__(self) -> str:
        return self.description or self.url

    def wants(self, event_type: str) -> bool:
        return self.is_active and event_type in self.events


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row and its state."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=40, unique=True, default=new_message_id, help_text="webhook-id")
    # What the event was (e.g. "entry:42"): one delivery per endpoint and event, so an event
    # recorded twice (a rescan, a repeated signal) is sent once.
    event_key = models.CharField(max_length=100)
    event_type = models.CharField(max_length=40)
    body = models.TextField(help_text='The JSON sent, {"type", "timestamp", "data"}, the same on every retry.')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_key"], name="webhook_delivery_once_per_event"),
            models.CheckConstraint(
                condition=~Q(status="pending") | Q(next_attempt_at__isnull=False),
                name="webhook_delivery_pending_is_scheduled",
            ),
        ]
        indexes = [
            # deliver_outbox: the due pending deliveries; partial, so it holds only the backlog.
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due", condition=Q(status="pending")),
            # The delivery log of one endpoint, newest first (admin filter).
            models.Index(fields=["endpoint", "-id"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id}"


class DeliveryAttempt(models.Model):
    """One HTTP try of a delivery: what came back, or why nothing did."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    response_body = models.CharField(max_length=500, blank=True, help_text="The start of the receiver's answer.")

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class ExpiryScanCursor(models.Model):
    """The last ledger entry id scanned for `points.expired` events (one row, id 1).

    The expiry job writes its expire entries with set-based SQL and announces only totals
    (`ledger_job_finished`); the ledger has no index by kind or date, so the new expire entries
    are found by a primary-key range scan from here. Created at the ledger's end by migration."""

    last_entry_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"expiry scan after entry {self.last_entry_id}"
