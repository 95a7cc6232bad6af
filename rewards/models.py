"""The reward catalog and the coupons that redeeming issues.

A `Reward` is what points buy; redeeming one (`rewards.services.reward_redeem`) spends the
points through the ledger and issues a `Redemption`: a coupon code the shop or the till
applies to an order (`used`), that staff or the member can cancel while unused (the points come
back with their original expiry dates), and that expires after the reward's validity.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

from loyalty.models import LedgerEntry, Member, Program
from loyalty.natural_keys import code_fill


class Reward(models.Model):
    class Kind(models.TextChoices):
        AMOUNT_OFF = "amount_off", "Money off (amount)"
        PERCENT_OFF = "percent_off", "Percent off"
        FREE_SHIPPING = "free_shipping", "Free shipping"
        FREE_PRODUCT = "free_product", "Free product (SKU)"
        PRODUCT_DISCOUNT = "product_discount", "Product discount (SKU + percent)"
        POINTS_FOR_AMOUNT = "points_for_amount", "Points as money off (value per point)"
        EXPERIENCE = "experience", "Experience"
        PARTNER = "partner", "Partner reward"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="rewards")
    name = models.CharField(max_length=120)
    code = models.SlugField(
        max_length=80,
        blank=True,
        default="",
        help_text="Names the reward in program files (docs/program-files.md); empty: made from the name.",
    )
    description = models.TextField(blank=True)
    image = models.ImageField(upload_to="rewards/", blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    value = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Amount off, percent off, or (points as money off) the money value of one point.",
    )
    sku = models.CharField(max_length=100, blank=True, help_text="Free product / product discount: the SKU.")
    cost_points = models.PositiveIntegerField(
        null=True, blank=True, help_text="Points it costs (not for points as money off: the member chooses)."
    )
    # Points as money off: the member or cashier picks how many points, in steps.
    points_step = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    points_min = models.PositiveIntegerField(null=True, blank=True)
    points_max = models.PositiveIntegerField(null=True, blank=True)
    min_tier = models.ForeignKey(
        "tiers.Tier",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Only members in this tier or a higher one.",
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Exclusive.")
    stock = models.PositiveIntegerField(
        null=True, blank=True, help_text="Total coupons it may issue; empty = unlimited."
    )
    issued_count = models.PositiveIntegerField(
        default=0, editable=False, help_text="Coupons issued and not cancelled (counts against the stock)."
    )
    per_member_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most coupons one member may hold (not cancelled); empty = no limit."
    )
    valid_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="A coupon expires N days after it is issued; empty = never."
    )
    position = models.IntegerField(default=0, help_text="Order in the catalog (lower first).")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["program", "position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(stock__isnull=True) | Q(issued_count__lte=F("stock")), name="reward_stock_not_exceeded"
            ),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True) | Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="reward_window_ordered",
            ),
            models.UniqueConstraint(fields=["program", "code"], condition=~Q(code=""), name="reward_unique_code"),
        ]
        indexes = [models.Index(fields=["program", "position"], name="reward_catalog", condition=Q(is_active=True))]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        code_fill(self, self.name, fallback="reward")
        super().save(*args, **kwargs)

    @property
    def is_points_for_amount(self) -> bool:
        return self.kind == self.Kind.POINTS_FOR_AMOUNT

    def clean(self) -> None:
        errors: dict[str, str] = {}
        kinds = self.Kind
        if self.kind == kinds.POINTS_FOR_AMOUNT:
            if not self.value:
                errors["value"] = "The money value of one point is required."
            if not self.points_step:
                errors["points_step"] = "Required: points are spent in multiples of this step."
            if self.points_min is None:
                errors["points_min"] = "Required."
            if self.points_min is not None and self.points_max is not None and self.points_max < self.points_min:
                errors["points_max"] = "The maximum must not be below the minimum."
            if self.points_step and self.points_min and self.points_min % self.points_step:
                errors["points_min"] = "The minimum must be a multiple of the step."
        else:
            if not self.cost_points:
                errors["cost_points"] = "Required: what the reward costs in points."
        if self.kind in (kinds.AMOUNT_OFF, kinds.PERCENT_OFF, kinds.PRODUCT_DISCOUNT) and not self.value:
            errors["value"] = "Required for this kind of reward."
        if self.kind in (kinds.PERCENT_OFF, kinds.PRODUCT_DISCOUNT) and self.value and self.value > 100:
            errors["value"] = "A percentage is at most 100."
        if self.kind in (kinds.FREE_PRODUCT, kinds.PRODUCT_DISCOUNT) and not self.sku:
            errors["sku"] = "Required for this kind of reward."
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "The end must be after the start."
        if self.min_tier_id and self.program_id and self.min_tier.program_id != self.program_id:
            errors["min_tier"] = "Choose a tier of this reward's program."
        if errors:
            raise ValidationError(errors)


class RewardSettings(models.Model):
    """A program's coupon policy."""

    program = models.OneToOneField(Program, on_delete=models.CASCADE, primary_key=True, related_name="+")
    refund_expired_coupons = models.BooleanField(
        default=True, help_text="Unused coupons past their expiry give their points back (original expiry dates)."
    )

    class Meta:
        verbose_name = verbose_name_plural = "coupon policy"

    def __str__(self) -> str:
        return f"Coupon policy of {self.program}"


class Redemption(models.Model):
    """A coupon: the reward a member bought with points, its code and its state."""

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued"
        USED = "used", "Used"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="redemptions", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="redemptions", db_index=False)
    code = models.CharField(max_length=20, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ISSUED)
    points = models.PositiveIntegerField()
    # What it gives, fixed at issue time (the reward may change later).
    kind = models.CharField(max_length=20, choices=Reward.Kind.choices)
    value = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    sku = models.CharField(max_length=100, blank=True)
    entry = models.OneToOneField(
        LedgerEntry,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The redeem entry; none for a gift (an automation's free coupon).",
    )
    refund_entry = models.ForeignKey(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    counts_against_stock = models.BooleanField(
        default=False, help_text="Issued while the reward tracked a stock: cancelling or expiry gives it back."
    )
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)
    order_id = models.CharField(max_length=255, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="used") | (Q(used_at__isnull=False) & ~Q(order_id="")),
                name="redemption_used_has_order",
            ),
            models.CheckConstraint(condition=Q(points__gte=0), name="redemption_points_non_negative"),
            models.CheckConstraint(
                condition=Q(value__isnull=True) | Q(value__gte=0), name="redemption_value_non_negative"
            ),
        ]
        permissions = [("redeem_for_member", "Can redeem rewards for a member and cancel coupons")]
        indexes = [
            # The member's coupons, and the per-member limit.
            models.Index(fields=["order_id"], name="redemption_order", condition=~Q(order_id="")),
            models.Index(fields=["member", "reward"], name="redemption_member_reward"),
            # The rewards admin list's "Coupons issued" column: one index range per reward.
            models.Index(fields=["reward"], name="redemption_reward_issued", condition=~Q(status="cancelled")),
            # The expiry job: issued coupons by expiry date.
            models.Index(fields=["expires_at"], name="redemption_issued_expiry", condition=Q(status="issued")),
        ]

    def __str__(self) -> str:
        return self.code
