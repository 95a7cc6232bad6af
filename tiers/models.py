"""VIP tiers: the levels of a program, each member's current tier and the history of changes.

A tier's threshold is on the program's `tier_metric` over its `tier_window` (loyalty.Program).
Tiers are ranked by `position` (higher = better); thresholds should rise with position.
All writes go through `tiers.services`.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from loyalty.models import Member, Program


class Tier(models.Model):
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="tiers")
    name = models.CharField(max_length=80)
    position = models.PositiveSmallIntegerField(help_text="Rank in the program: higher is better.")
    threshold = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Value of the program's tier metric over its window needed to reach this tier.",
    )
    multiplier = models.DecimalField(
        max_digits=6,
        decimal_places=3,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("1"))],
        help_text="Earn multiplier on purchase points.",
    )
    benefits = models.TextField(blank=True)
    retention_days = models.PositiveIntegerField(
        default=0, help_text="A member keeps this tier at least this many days after reaching it."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["program", "position"]
        constraints = [
            models.UniqueConstraint(fields=["program", "name"], name="tier_unique_name"),
            models.UniqueConstraint(fields=["program", "position"], name="tier_unique_position"),
            models.CheckConstraint(condition=Q(threshold__gte=0), name="tier_threshold_non_negative"),
            models.CheckConstraint(condition=Q(multiplier__gte=1), name="tier_multiplier_at_least_one"),
        ]

    def __str__(self) -> str:
        return self.name


class MemberTier(models.Model):
    """A member's current tier. `manual_until` set: staff chose the tier; evaluation leaves it
    alone until that moment. `retain_until`: no downgrade before it."""

    member = models.OneToOneField(Member, on_delete=models.CASCADE, primary_key=True, related_name="tier_state")
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    since = models.DateTimeField()
    retain_until = models.DateTimeField(null=True, blank=True)
    manual_until = models.DateTimeField(null=True, blank=True)
    manual_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [
            # tiers_evaluate: manual tiers that end.
            models.Index(fields=["manual_until"], name="membertier_manual", condition=Q(manual_until__isnull=False)),
        ]
        permissions = [("set_tier_manually", "Can set a member's tier by hand")]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.tier or 'no tier'}"


class TierChange(models.Model):
    """One change of a member's tier (who/what/when). Written by `events.tier_changed_event`
    or, for the nightly run, by the set-based SQL in `services.tiers_evaluate`."""

    class Kind(models.TextChoices):
        UPGRADE = "upgrade", "Upgrade"
        DOWNGRADE = "downgrade", "Downgrade"
        MANUAL = "manual", "Set by staff"
        MANUAL_EXPIRED = "manual_expired", "Manual tier ended"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="tier_changes", db_index=False)
    from_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    metric_value = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField()
    reason = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [
            # A member's tier history, newest first (admin, API).
            models.Index(fields=["member", "-at"], name="tierchange_member_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_tier_id} -> {self.to_tier_id} (member {self.member_id})"
