"""Earning rules: what an activity earns. Staff edit them in the admin; `workflows.services`
applies them (`activity_report`) and `workflows.rules` computes the points.

A `RuleAward` row records every firing of a rule (its points after multipliers and caps), so
that the caps per member per day, week, month and lifetime and per order are sums over it.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from loyalty.models import Activity, Member, Program

TRIGGER_SUGGESTIONS = (
    "purchase",
    "signup",
    "birthday",
    "referral",
    "social_share",
    "store_visit",
    "review",
)
# A built-in activity type or a custom event name (lowercase letters, digits, _ . -).
validate_activity_type = RegexValidator(
    r"^[a-z0-9][a-z0-9_.-]{0,39}$", "Lowercase letters, digits, '_', '.' or '-' (at most 40)."
)


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class EarningRule(models.Model):
    """A rule of a program: when an activity of type `trigger` matches the conditions, the
    member earns points computed by `kind`, times `multiplier` (and the tier multiplier for
    purchases), rounded down, within the caps. Rules run by descending `priority`; a
    non-stackable rule that fires stops the rules below it."""

    class Kind(models.TextChoices):
        FIXED = "fixed", "Fixed points"
        PER_AMOUNT = "per_amount", "Points per currency unit spent"
        PER_ITEM = "per_item", "Points per item bought"
        PER_CATEGORY = "per_category", "Points per currency unit spent in the included categories"
        PER_SKU = "per_sku", "Points per unit of the included SKUs"

    class Channel(models.TextChoices):
        ANY = "", "Any channel"
        ONLINE = "online", "Online"
        POS = "pos", "Point of sale"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="earning_rules")
    name = models.CharField(max_length=120, help_text="Shown to the member as the reason of the points.")
    trigger = models.CharField(
        max_length=40,
        validators=[validate_activity_type],
        help_text="Activity type: purchase, signup, birthday, referral, social_share, store_visit, review, "
        "or a custom event name.",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FIXED)
    points = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Fixed points, or points per unit (currency unit or item). Empty on a per-amount rule: "
        "the program's earn rate.",
    )
    # Conditions
    min_amount = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Minimum order amount."
    )
    include_categories = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    exclude_categories = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    include_skus = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    exclude_skus = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True, default="")
    starts_at = models.DateTimeField(null=True, blank=True, help_text="Campaign start (activity time).")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Campaign end, exclusive.")
    days_of_week = ArrayField(
        models.PositiveSmallIntegerField(choices=Weekday.choices),
        default=list,
        blank=True,
        help_text="Only on these days (program time zone); empty = every day.",
    )
    multiplier = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Bonus multiplier (2 = double points).",
    )
    # Caps, in points, per member (periods in the program's time zone, by activity time)
    cap_per_day = models.PositiveIntegerField(null=True, blank=True)
    cap_per_week = models.PositiveIntegerField(null=True, blank=True)
    cap_per_month = models.PositiveIntegerField(null=True, blank=True)
    cap_lifetime = models.PositiveIntegerField(null=True, blank=True)
    cap_per_order = models.PositiveIntegerField(null=True, blank=True)
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    stackable = models.BooleanField(
        default=True, help_text="Unticked: when this rule fires, rules of lower priority do not run."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["program", "-priority", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(points__isnull=True) | Q(points__gte=0), name="rule_points_non_negative"
            ),
            models.CheckConstraint(condition=Q(multiplier__gte=0), name="rule_multiplier_non_negative"),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True) | Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="rule_window_ordered",
            ),
        ]
        indexes = [
            # activity_report: the active rules of a program for one trigger.
            models.Index(fields=["program", "trigger"], name="rule_active_trigger", condition=Q(is_active=True)),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind != self.Kind.PER_AMOUNT and self.points is None:
            errors["points"] = "Required for this kind of rule."
        if self.kind == self.Kind.PER_CATEGORY and not self.include_categories:
            errors["include_categories"] = "A per-category rule needs the categories it pays for."
        if self.kind == self.Kind.PER_SKU and not self.include_skus:
            errors["include_skus"] = "A per-SKU rule needs the SKUs it pays for."
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "The end must be after the start."
        if any(d not in Weekday.values for d in self.days_of_week or []):
            errors["days_of_week"] = "Days are 0 (Monday) to 6 (Sunday)."
        if errors:
            raise ValidationError(errors)


class RuleAward(models.Model):
    """One firing of a rule: the points it gave a member for an activity (after multipliers
    and caps). Written once by `activity_report`; the caps sum these rows."""

    rule = models.ForeignKey(EarningRule, on_delete=models.PROTECT, related_name="awards", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", db_index=False)
    activity = models.ForeignKey(Activity, on_delete=models.PROTECT, related_name="+", db_index=False)
    points = models.PositiveBigIntegerField()
    occurred_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["activity", "rule"], name="award_once_per_activity")]
        indexes = [
            # Caps: a member's awards of one rule within a period.
            models.Index(fields=["member", "rule", "occurred_at"], name="award_member_rule_time"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} +{self.points} (member {self.member_id})"


class ActivityKey(models.Model):
    """The idempotency key of a reported activity (rule 4): a retry of `activity_report` with
    the same key returns the first activity and posts nothing."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    activity = models.OneToOneField(Activity, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["program", "key"], name="activity_key_unique")]

    def __str__(self) -> str:
        return self.key
