"""Earning rules: what an activity earns. Staff edit them in the admin; `workflows.services`
applies them (`activity_report`) and `workflows.rules` computes the points.

A `RuleAward` row records every firing of a rule (its points after multipliers and caps), so
that the caps per member per day, week, month and lifetime and per order are sums over it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from loyalty.models import Activity, Member, Program
from loyalty.natural_keys import code_fill

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


class BudgetPeriod(models.TextChoices):
    """The period of a budget's per-period limit, in the program's time zone (docs/budgets.md)."""

    DAY = "day", "Per day"
    WEEK = "week", "Per week (ISO, Monday to Sunday)"
    MONTH = "month", "Per month"


def budget_fields() -> tuple[models.Field, models.Field, models.Field]:
    """The budget of an earning rule, an automation or a program (docs/budgets.md): points it
    may award in all and/or per period; empty = no limit. `workflows.budgets` enforces them."""
    return (
        models.PositiveIntegerField(
            null=True,
            blank=True,
            help_text="Budget: points this may award in all (awards stop when used up); empty: no limit.",
        ),
        models.PositiveIntegerField(
            null=True,
            blank=True,
            help_text="Budget: points this may award per period (below); empty: no limit.",
        ),
        models.CharField(
            max_length=5,
            choices=BudgetPeriod.choices,
            blank=True,  # a form left empty: a month (the forms' `clean_budget_period`)
            default=BudgetPeriod.MONTH,
            db_default=BudgetPeriod.MONTH,
            help_text="The period of the per-period budget (program time zone).",
        ),
    )


class Builtin(models.TextChoices):
    """The built-in activities a program gets as ready-made rules, inactive until staff
    switch them on (`workflows.builtins`)."""

    SIGNUP = "signup", "Account creation bonus"
    PURCHASE = "purchase", "Points per currency unit spent"
    BIRTHDAY = "birthday", "Birthday bonus"
    SOCIAL_SHARE = "social_share", "Social share"
    STORE_VISIT = "store_visit", "Store visit"


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
    code = models.SlugField(
        max_length=80,
        blank=True,
        default="",
        help_text="Names the rule in program files (docs/program-files.md); empty: made from the name.",
    )
    customer_text = models.CharField(
        max_length=200,
        blank=True,
        default="",
        db_default="",
        help_text='How the portal\'s "How to earn" page tells members about this rule; empty = a text '
        'written from the rule ("1 point per EUR 1 spent").',
    )
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
    tiers = models.ManyToManyField(
        "tiers.Tier",
        blank=True,
        related_name="+",
        help_text="Only members in one of these tiers; none selected = every member.",
    )
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
    budget_total, budget_per_period, budget_period = budget_fields()
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    stackable = models.BooleanField(
        default=True, help_text="Unticked: when this rule fires, rules of lower priority do not run."
    )
    is_active = models.BooleanField(default=True)
    builtin = models.CharField(
        max_length=20,
        choices=Builtin.choices,
        blank=True,
        default="",
        editable=False,
        help_text="Which built-in activity this ready-made rule is (empty for the merchant's own rules).",
    )
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
            models.UniqueConstraint(
                fields=["program", "builtin"], condition=~Q(builtin=""), name="rule_one_builtin_per_program"
            ),
            models.UniqueConstraint(fields=["program", "code"], condition=~Q(code=""), name="rule_unique_code"),
        ]
        indexes = [
            # activity_report: the active rules of a program for one trigger.
            models.Index(fields=["program", "trigger"], name="rule_active_trigger", condition=Q(is_active=True)),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        code_fill(self, self.builtin or self.name, fallback="rule")
        super().save(*args, **kwargs)

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


class ReferralSettings(models.Model):
    """A program's referral offer: when a referred friend makes a first qualifying purchase,
    the referrer and the friend each earn their points (`workflows.referrals`)."""

    program = models.OneToOneField(Program, on_delete=models.CASCADE, primary_key=True, related_name="+")
    is_active = models.BooleanField(default=False)
    referrer_points = models.PositiveIntegerField(default=500, help_text="Points for the member who referred.")
    friend_points = models.PositiveIntegerField(default=250, help_text="Points for the referred friend.")
    min_order_amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="The friend's purchase qualifies from this amount on.",
    )
    monthly_cap = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Friends paid for per referrer per month at most; later friends still get theirs.",
    )
    qualify_within_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="The first qualifying purchase must come within N days of enrolling."
    )

    class Meta:
        verbose_name = "referral settings"
        verbose_name_plural = "referral settings"

    def __str__(self) -> str:
        return f"Referral settings of {self.program}"


class Referral(models.Model):
    """A friend enrolled with a referrer's code. Once per friend (the friend is unique); the
    fraud guards reject it at creation, the friend's first qualifying purchase rewards it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for the first qualifying purchase"
        REWARDED = "rewarded", "Rewarded"
        REJECTED = "rejected", "Rejected"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+", db_index=False)
    referrer = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", db_index=False)
    friend = models.OneToOneField(Member, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=255, blank=True, help_text="Why it was rejected or not paid in full.")
    created_at = models.DateTimeField()
    qualified_at = models.DateTimeField(null=True, blank=True)
    order_id = models.CharField(max_length=255, blank=True)
    referrer_points = models.PositiveIntegerField(default=0)
    friend_points = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            # The referrer's list and the monthly cap (rewarded referrals in a month).
            models.Index(fields=["referrer", "qualified_at"], name="referral_referrer_time"),
            models.Index(fields=["program", "status", "-created_at"], name="referral_program_status"),
        ]

    def __str__(self) -> str:
        return f"{self.referrer_id} -> {self.friend_id} ({self.status})"


class Automation(models.Model):
    """Event or schedule -> conditions -> actions (`workflows.automations`). It fires at most
    once per member per `period`; an `AutomationRun` row per firing makes that hold."""

    class Trigger(models.TextChoices):
        ACTIVITY = "activity", "An activity is reported"
        TIER_CHANGED = "tier_changed", "The member's tier changed"
        ENROLLED = "member_enrolled", "A member enrolled"
        DAILY = "daily", "Every day (run_workflows)"

    class Period(models.TextChoices):
        ONCE = "once", "Once per member, ever"
        YEAR = "year", "Once per member per year"
        MONTH = "month", "Once per member per month"
        WEEK = "week", "Once per member per week"
        DAY = "day", "Once per member per day"

    class ReadyMade(models.TextChoices):
        VIP = "vip_purchase_history", "VIP by purchase history"
        WIN_BACK = "win_back", "Win-back"
        ANNIVERSARY = "anniversary", "Anniversary bonus"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="automations")
    name = models.CharField(max_length=120, help_text="Also the reason of the points it awards.")
    code = models.SlugField(
        max_length=80,
        blank=True,
        default="",
        help_text="Names the automation in program files (docs/program-files.md); empty: made from the name.",
    )
    is_active = models.BooleanField(default=False)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.DAILY)
    activity_type = models.CharField(
        max_length=40,
        blank=True,
        validators=[validate_activity_type],
        help_text="With the activity trigger: which activity type (e.g. purchase).",
    )
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.YEAR)
    # Conditions (all that are set must hold)
    window_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Orders, spend and points are counted over the last N days (empty: ever)."
    )
    min_orders = models.PositiveIntegerField(null=True, blank=True)
    min_amount_spent = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    min_points_earned = models.PositiveIntegerField(null=True, blank=True)
    min_days_inactive = models.PositiveIntegerField(null=True, blank=True, help_text="No activity for at least N days.")
    tiers = models.ManyToManyField(
        "tiers.Tier", blank=True, related_name="+", help_text="The member is in one of these tiers (none: any)."
    )
    min_days_enrolled = models.PositiveIntegerField(null=True, blank=True)
    on_enrollment_anniversary = models.BooleanField(
        default=False, help_text="Only on the anniversary of the member's enrolment (program time zone)."
    )
    # Actions
    award_points = models.PositiveIntegerField(null=True, blank=True)
    set_tier = models.ForeignKey(
        "tiers.Tier", null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="Set this tier."
    )
    set_tier_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Keep the tier set for N days (then the nightly evaluation decides)."
    )
    email_subject = models.CharField(max_length=200, blank=True)
    email_body = models.TextField(
        blank=True, help_text="Django template; {{ member.first_name }}, {{ points }}, {{ program.name }} …"
    )
    email_transactional = models.BooleanField(
        default=False,
        help_text="The email is a service message (e.g. a status change the member must know of): it goes to "
        "every member with an address. Unticked, it is marketing: only members who consented get it.",
    )
    budget_total, budget_per_period, budget_period = budget_fields()
    reward_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Issue this reward (the rewards app): the reward's id."
    )
    ready_made = models.CharField(max_length=24, choices=ReadyMade.choices, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["program", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["program", "ready_made"], condition=~Q(ready_made=""), name="automation_one_ready_made"
            ),
            models.UniqueConstraint(fields=["program", "code"], condition=~Q(code=""), name="automation_unique_code"),
        ]
        indexes = [
            models.Index(fields=["program", "trigger"], name="automation_active", condition=Q(is_active=True)),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        code_fill(self, self.ready_made or self.name, fallback="automation")
        super().save(*args, **kwargs)


class AutomationRun(models.Model):
    """One firing of an automation for a member in a period (`period_key`, e.g. "2026",
    "2026-11", "2026-W47", "2026-11-23", "once"): the unique constraint is the
    "at most once per member per period" rule, also under concurrent or repeated runs."""

    automation = models.ForeignKey(Automation, on_delete=models.CASCADE, related_name="runs", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+", db_index=False)
    period_key = models.CharField(max_length=12)
    fired_at = models.DateTimeField()
    points = models.PositiveIntegerField(default=0)
    details = models.JSONField(default=dict, blank=True, help_text="What the actions did.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["automation", "member", "period_key"], name="automation_run_once"),
        ]
        indexes = [models.Index(fields=["member", "-fired_at"], name="automation_run_member")]

    def __str__(self) -> str:
        return f"{self.automation_id} / {self.member_id} / {self.period_key}"


# --------------------------------------------------------------------------------------------
# Budgets (docs/budgets.md): limits on the points a rule, an automation or a program awards


class ProgramBudget(models.Model):
    """A program's budget: the points all its earning rules and automations together may
    award (in all and/or per period). One row per program, created in the admin."""

    program = models.OneToOneField(Program, on_delete=models.CASCADE, primary_key=True, related_name="+")
    budget_total, budget_per_period, budget_period = budget_fields()

    class Meta:
        verbose_name = "program budget"
        verbose_name_plural = "program budgets"

    def __str__(self) -> str:
        return f"Budget of {self.program}"


class BudgetScope(models.TextChoices):
    RULE = "rule", "Earning rule"
    AUTOMATION = "automation", "Automation"
    PROGRAM = "program", "Program"


class BudgetUse(models.Model):
    """The points a budget gave in one period (`period_key`: "total", "2026-12-05",
    "2026-W49" or "2026-12"): the counter row `workflows.budgets` locks (FOR UPDATE) and adds
    to in the transaction of each award, so concurrent awards never overshoot. `owner_id` is
    the rule's, the automation's or the program's id, by `scope`. `alerted_*_at`: when the 80 %
    and 100 % alerts of this period were sent (once each)."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+", db_index=False)
    scope = models.CharField(max_length=12, choices=BudgetScope.choices)
    owner_id = models.BigIntegerField()
    period_key = models.CharField(max_length=12)
    used = models.PositiveBigIntegerField(default=0)
    limit_points = models.PositiveBigIntegerField(default=0, help_text="The limit when it was last used.")
    alerted_80_at = models.DateTimeField(null=True, blank=True)
    alerted_100_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "owner_id", "period_key"], name="budget_use_once"),
        ]
        indexes = [models.Index(fields=["program", "-updated_at"], name="budget_use_program")]

    def __str__(self) -> str:
        return f"{self.scope} {self.owner_id} {self.period_key}: {self.used}"


class BudgetCut(models.Model):
    """An award a budget cut or stopped: what the rule or automation would have given, what it
    gave, and why in words ("Budget of rule ... used up"). Written with the activity (or the
    automation's firing), so staff see why a purchase earned less."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+", db_index=False)
    activity = models.ForeignKey(
        Activity, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+", db_index=False)
    rule = models.ForeignKey(EarningRule, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    automation = models.ForeignKey(Automation, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    budget_scope = models.CharField(max_length=12, choices=BudgetScope.choices, help_text="The budget that cut.")
    wanted = models.PositiveBigIntegerField(help_text="Points without the budget.")
    given = models.PositiveBigIntegerField(help_text="Points given.")
    reason = models.CharField(max_length=255)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["program", "-at"], name="budget_cut_program"),
            models.Index(fields=["activity"], name="budget_cut_activity", condition=Q(activity__isnull=False)),
            models.Index(fields=["member", "-at"], name="budget_cut_member"),
        ]

    def __str__(self) -> str:
        return self.reason


class FraudLimits(models.Model):
    """A program's velocity limits on members (docs/fraud.md). When an activity of a member
    passes one, the activity is accepted but its points are held for review (`ReviewHold`).
    Empty = no limit; `is_active` switches them all."""

    program = models.OneToOneField(Program, on_delete=models.CASCADE, primary_key=True, related_name="+")
    is_active = models.BooleanField(default=False)
    max_activities_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Activities a member may report per day (program time zone) before review."
    )
    max_points_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Points a member may earn per day before review."
    )
    max_refunds_per_month = models.PositiveIntegerField(
        null=True, blank=True, help_text="Refunds per calendar month; past them the member's next points are held."
    )
    max_members_per_card = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Members one card may have passed through (enrolled, assigned, claimed, merged).",
    )
    max_same_amount_per_day = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Purchases of a member with the very same amount per day before review.",
    )

    class Meta:
        verbose_name = "fraud limits"
        verbose_name_plural = "fraud limits"

    def __str__(self) -> str:
        return f"Fraud limits of {self.program}"


class ReviewHold(models.Model):
    """An activity whose points are held until a reviewer releases or rejects them
    (`workflows.fraud`): one per activity; its ledger lots wait with `HELD_UNTIL`."""

    class Reason(models.TextChoices):
        ACTIVITIES_PER_DAY = "activities_per_day", "Too many activities in a day"
        POINTS_PER_DAY = "points_per_day", "Too many points in a day"
        REFUNDS_PER_MONTH = "refunds_per_month", "Too many refunds in a month"
        MEMBERS_PER_CARD = "members_per_card", "Card shared by too many members"
        SAME_AMOUNT = "same_amount", "Same purchase amount repeated in a day"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        RELEASED = "released", "Released"
        REJECTED = "rejected", "Rejected"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", db_index=False)
    activity = models.OneToOneField(Activity, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=24, choices=Reason.choices)
    detail = models.CharField(max_length=255, blank=True, help_text="Every limit the activity passed.")
    points = models.PositiveBigIntegerField(help_text="Points held when the activity was reported.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    note = models.CharField(max_length=255, blank=True, help_text="The reviewer's note.")
    points_moved = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Points the decision released or reversed (less if refunded meanwhile)."
    )

    class Meta:
        verbose_name = "review hold"
        verbose_name_plural = "review holds"
        permissions = [("decide_reviewhold", "Can release or reject points held for review")]
        indexes = [
            # The review queue: a program's waiting holds, oldest first.
            models.Index(fields=["program", "id"], name="reviewhold_pending", condition=Q(status="pending")),
            models.Index(fields=["member", "-id"], name="reviewhold_member"),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()}: {self.points} points of member {self.member_id}"
