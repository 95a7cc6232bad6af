"""Outgoing webhooks (docs/api.md "Outgoing webhooks", docs/webhooks.md) and member emails
(docs/emails.md).

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
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from loyalty.models import LANGUAGES, Program
from loyalty.natural_keys import code_fill

from . import email_kinds

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
    BUDGET_THRESHOLD = "budget.threshold", "Budget 80 % / 100 % used (docs/budgets.md)"


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
    code = models.SlugField(
        max_length=80,
        blank=True,
        default="",
        help_text="Names the endpoint in program files (docs/program-files.md); empty: made from the "
        "description or the URL's host.",
    )
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
        constraints = [
            models.UniqueConstraint(
                fields=["program", "code"], condition=~Q(code=""), name="webhook_endpoint_unique_code"
            ),
        ]

    def __str__(self) -> str:
        return self.description or self.url

    def save(self, *args: Any, **kwargs: Any) -> None:
        code_fill(self, self.description or urlsplit(self.url or "").hostname or "", fallback="endpoint")
        super().save(*args, **kwargs)

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


# --------------------------------------------------------------------------------------------
# Member emails (docs/emails.md): settings and templates per program, the outbox, suppressions
# and opt-outs. All writes go through `notifications.emails`.


class EmailSettings(models.Model):
    """A program's email settings (created with defaults when first needed)."""

    class ReminderFrequency(models.TextChoices):
        OFF = "off", "Never"
        MONTHLY = "monthly", "Monthly"
        QUARTERLY = "quarterly", "Quarterly"

    program = models.OneToOneField(Program, on_delete=models.CASCADE, related_name="email_settings")
    enabled_kinds = ArrayField(
        models.CharField(max_length=40),
        default=email_kinds.default_enabled_kinds,
        blank=True,
        help_text="The kinds of email this program sends.",
    )
    from_name = models.CharField(max_length=100, blank=True, help_text="Empty: the program's name.")
    from_email = models.EmailField(blank=True, help_text="Empty: the installation's DEFAULT_FROM_EMAIL.")
    reply_to = models.EmailField(blank=True)
    admin_email = models.EmailField(
        blank=True, help_text="Where copies of redemptions go (the reward_redeemed_admin kind)."
    )
    postal_address = models.TextField(
        blank=True, help_text="Shown in every email's footer (anti-spam laws ask for it)."
    )
    expiry_warning_days = models.PositiveSmallIntegerField(
        default=30, help_text="Warn members this many days before their points expire (and again the day before)."
    )
    reminder_frequency = models.CharField(
        max_length=10, choices=ReminderFrequency.choices, default=ReminderFrequency.MONTHLY
    )
    tier_at_risk_days = models.PositiveSmallIntegerField(
        default=14, help_text="Warn members this many days before an evaluation would move them down a tier."
    )
    welcome_on_import = models.BooleanField(
        default=False, help_text="Send the welcome email to members created by a CSV import."
    )

    class Meta:
        verbose_name = "email settings"
        verbose_name_plural = "email settings"

    def __str__(self) -> str:
        return f"Email settings of {self.program}"

    def sends(self, kind: str) -> bool:
        return kind in email_kinds.ALWAYS_ON or kind in self.enabled_kinds


class EmailTemplate(models.Model):
    """A merchant's version of one kind's message in one language. Without a row (or with an
    empty field) the shipped default is used (notifications/templates/emails/<language>/)."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="email_templates")
    kind = models.CharField(max_length=40, choices=email_kinds.EmailKind.choices)
    language = models.CharField(max_length=8, choices=LANGUAGES)
    subject = models.CharField(max_length=300, blank=True)
    html_body = models.TextField(blank=True, help_text="The message's content (HTML); the branded layout wraps it.")
    text_body = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["program", "kind", "language"]
        constraints = [
            models.UniqueConstraint(fields=["program", "kind", "language"], name="email_template_once"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.language})"


class EmailMessage(models.Model):
    """One email in the outbox: written in the transaction of the event that causes it, sent
    after commit by a task, retried with backoff, its delivery tracked by the ESP's webhook.

    `data` holds the event's facts as plain JSON; the message is rendered when it is sent
    (member, program and template as they are then). `source` names the event (e.g.
    "activity:42"); one message per (program, member, kind, source) whatever retries or racing
    workers do."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained (spam)"
        FAILED = "failed", "Failed"
        SUPPRESSED = "suppressed", "Suppressed (not sent)"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+", db_index=False)
    member = models.ForeignKey(
        "loyalty.Member", null=True, blank=True, on_delete=models.SET_NULL, related_name="emails", db_index=False
    )
    kind = models.CharField(max_length=40, choices=email_kinds.EmailKind.choices)
    source = models.CharField(max_length=120, help_text="The event that caused the message, e.g. activity:42.")
    to_email = models.EmailField(blank=True, help_text="Filled when sent (the member's address then).")
    data = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    subject = models.CharField(max_length=300, blank=True, help_text="As sent.")
    language = models.CharField(max_length=8, blank=True)
    esp_message_id = models.CharField(max_length=200, blank=True, db_index=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    status_at = models.DateTimeField(null=True, blank=True, help_text="When the status last changed.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["program", "member", "kind", "source"],
                name="email_message_once",
                condition=Q(member__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["program", "kind", "source"], name="email_message_once_staff", condition=Q(member__isnull=True)
            ),
            models.CheckConstraint(
                condition=~Q(status="queued") | Q(next_attempt_at__isnull=False), name="email_message_queued_is_due"
            ),
        ]
        indexes = [
            # deliver_outbox: the due queued messages; partial, so it holds only the backlog.
            models.Index(fields=["next_attempt_at"], name="email_message_due", condition=Q(status="queued")),
            # A member's messages, newest first (member page, portal).
            models.Index(fields=["member", "-id"], name="email_message_member"),
            # The outbox list, newest first per program and filtered by kind/status.
            models.Index(fields=["program", "-created_at"], name="email_message_program"),
            # send_expiry_warnings: the newest expiry day a member was warned about (its sources).
            models.Index(
                fields=["member", "source"], name="email_message_expiring", condition=Q(kind="points_expiring")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class EmailSuppression(models.Model):
    """An address no program of this installation writes to any more: a hard bounce or a
    spam complaint reported by the ESP, or a staff decision."""

    class Reason(models.TextChoices):
        BOUNCED = "bounced", "Hard bounce"
        COMPLAINED = "complained", "Spam complaint"
        STAFF = "staff", "Added by staff"

    email = models.EmailField(unique=True, help_text="Stored in lower case.")
    reason = models.CharField(max_length=12, choices=Reason.choices)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.email} ({self.reason})"


class EmailOptOut(models.Model):
    """A member does not want one kind of email (or any marketing email: kind "*")."""

    ALL_MARKETING = "*"

    member = models.ForeignKey("loyalty.Member", on_delete=models.CASCADE, related_name="email_opt_outs")
    kind = models.CharField(max_length=40)
    created_at = models.DateTimeField()
    via = models.CharField(max_length=20, blank=True, help_text="unsubscribe link, portal, staff...")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["member", "kind"], name="email_opt_out_once")]

    def __str__(self) -> str:
        return f"{self.member_id} opted out of {self.kind}"


class EmailScheduleRun(models.Model):
    """A scheduled email job done for one program and period (the points statement of
    "2026-12"): later runs in that period skip the program (notifications.email_schedules)."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    job = models.CharField(max_length=40)
    period = models.CharField(max_length=20)
    finished_at = models.DateTimeField()
    queued = models.PositiveIntegerField(default=0, help_text="Messages queued by the run.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["program", "job", "period"], name="email_schedule_run_once")]

    def __str__(self) -> str:
        return f"{self.job} {self.period} of program {self.program_id}"
