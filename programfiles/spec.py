"""What a program file holds (docs/program-files.md): its sections, their fields, and how a
field's model value becomes a document value and back.

One table drives the export, the load, the diff and the JSON Schema
(docs/program.schema.json), so they cannot disagree. A field is a dotted path in its section's
item (`conditions.min_amount`) and the model attribute it stands for; references between
objects use natural keys (a tier's name, a reward's code), never database ids.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models

from loyalty.models import Program
from notifications.emails import SETTINGS_FIELDS
from notifications.models import EmailSettings, EmailTemplate, WebhookEndpoint
from rewards.models import Reward, RewardSettings
from tiers.models import Tier
from workflows.models import Automation, EarningRule, FraudLimits, ProgramBudget, ReferralSettings

VERSION = 1

# Field kinds besides the model's own types: references by natural key.
TIER, TIERS, REWARD = "tier", "tiers", "reward"


@dataclass(frozen=True)
class Field:
    path: str  # dotted, in the item: "conditions.min_amount"
    attr: str  # the model attribute ("min_amount"; "reward_id" for a reward reference)
    ref: str = ""  # TIER, TIERS or REWARD: the value is a natural key (or a list of them)


@dataclass(frozen=True)
class Section:
    name: str
    model: type[models.Model]
    fields: tuple[Field, ...]
    key: tuple[str, ...] = ()  # list sections: the natural key's fields (in the item); empty = one object
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_list(self) -> bool:
        return bool(self.key)

    def model_field(self, f: Field) -> models.Field:
        return self.model._meta.get_field("reward_id" if f.ref == REWARD else f.attr)


def _plain(model: type[models.Model], *names: str) -> tuple[Field, ...]:
    return tuple(Field(name, name) for name in names)


def _grouped(group: str, *names: str, prefix: str = "") -> tuple[Field, ...]:
    return tuple(Field(f"{group}.{name}", f"{prefix}{name}") for name in names)


SECTIONS: tuple[Section, ...] = (
    Section(
        "program",
        Program,
        _plain(
            Program,
            "slug",
            "name",
            "is_active",
            "points_name",
            "currency",
            "earn_rate",
            "min_redemption",
            "enrol_on_first_purchase",
            "pending_days",
            "expiry_days",
            "tier_metric",
            "tier_window",
            "tier_window_days",
            "timezone",
            "card_prefix",
            "card_number_length",
        ),
        title="Program settings",
    ),
    Section("branding", Program, _plain(Program, "brand_color", "logo_url", "language", "terms"), title="Branding"),
    Section(
        "tiers",
        Tier,
        _plain(Tier, "name", "position", "threshold", "multiplier", "benefits", "retention_days", "is_active"),
        key=("name",),
        title="Tiers",
    ),
    Section(
        "rewards",
        Reward,
        (
            *_plain(Reward, "code", "name", "description", "kind", "value", "sku", "cost_points"),
            *_plain(Reward, "points_step", "points_min", "points_max"),
            Field("min_tier", "min_tier", TIER),
            *_plain(Reward, "starts_at", "ends_at", "stock", "per_member_limit", "valid_days", "position", "is_active"),
        ),
        key=("code",),
        title="Rewards",
    ),
    Section("coupon_policy", RewardSettings, _plain(RewardSettings, "refund_expired_coupons"), title="Coupon policy"),
    Section(
        "earning_rules",
        EarningRule,
        (
            *_plain(EarningRule, "code", "name", "builtin", "customer_text", "trigger", "kind", "points"),
            *_plain(EarningRule, "multiplier", "priority", "stackable", "is_active"),
            *_grouped("conditions", "min_amount", "channel", "include_categories", "exclude_categories"),
            *_grouped("conditions", "include_skus", "exclude_skus", "days_of_week"),
            Field("conditions.tiers", "tiers", TIERS),
            *_grouped("campaign", "starts_at", "ends_at"),
            *_grouped("caps", "per_order", "per_day", "per_week", "per_month", prefix="cap_"),
            Field("caps.lifetime", "cap_lifetime"),
            *_grouped("budget", "total", "per_period", "period", prefix="budget_"),
        ),
        key=("code",),
        title="Earning rules",
    ),
    Section(
        "referrals",
        ReferralSettings,
        _plain(
            ReferralSettings,
            "is_active",
            "referrer_points",
            "friend_points",
            "min_order_amount",
            "monthly_cap",
            "qualify_within_days",
        ),
        title="Referrals",
    ),
    Section(
        "fraud_limits",
        FraudLimits,
        _plain(
            FraudLimits,
            "is_active",
            "max_activities_per_day",
            "max_points_per_day",
            "max_refunds_per_month",
            "max_members_per_card",
            "max_same_amount_per_day",
        ),
        title="Fraud limits",
    ),
    Section(
        "automations",
        Automation,
        (
            *_plain(Automation, "code", "name", "ready_made", "is_active", "trigger", "activity_type", "period"),
            *_grouped("conditions", "window_days", "min_orders", "min_amount_spent", "min_points_earned"),
            *_grouped("conditions", "min_days_inactive", "min_days_enrolled", "on_enrollment_anniversary"),
            Field("conditions.tiers", "tiers", TIERS),
            *_grouped("actions", "award_points", "set_tier_days", "email_subject", "email_body"),
            *_grouped("actions", "email_transactional"),
            Field("actions.set_tier", "set_tier", TIER),
            Field("actions.reward", "reward", REWARD),
            *_grouped("budget", "total", "per_period", "period", prefix="budget_"),
        ),
        key=("code",),
        title="Automations",
    ),
    Section(
        "budget",
        ProgramBudget,
        tuple(Field(name, f"budget_{name}") for name in ("total", "per_period", "period")),
        title="Program budget (all rules and automations together)",
    ),
    Section("email_settings", EmailSettings, _plain(EmailSettings, *SETTINGS_FIELDS), title="Email settings"),
    Section(
        "email_templates",
        EmailTemplate,
        _plain(EmailTemplate, "kind", "language", "subject", "html_body", "text_body"),
        key=("kind", "language"),
        title="Email templates",
    ),
    Section(
        "webhook_endpoints",
        WebhookEndpoint,
        _plain(WebhookEndpoint, "code", "url", "description", "events", "is_active"),
        key=("code",),
        title="Webhook endpoints",
    ),
)
BY_NAME = {section.name: section for section in SECTIONS}


# --------------------------------------------------------------------------------------------
# Values


def decimal_out(value: Decimal) -> int | float:
    """A decimal as the shortest number: 2.00 -> 2, 1.2500 -> 1.25 (exact: at most 12 digits)."""
    value = value.normalize()
    if value == value.to_integral_value():
        return int(value)
    return float(str(value))


def datetime_out(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def to_document(model_field: models.Field, value: Any) -> Any:
    """A model value as a document value (JSON types only)."""
    if value is None:
        return None
    if isinstance(model_field, models.DecimalField):
        return decimal_out(value)
    if isinstance(model_field, models.DateTimeField):
        return datetime_out(value)
    if isinstance(model_field, ArrayField):
        return sorted(_plain_value(v) for v in value)  # every list field is a set (kinds, events, days)
    return _plain_value(value)


def _plain_value(value: Any) -> Any:
    """Choices' enum members (a fresh object's defaults) as the plain str or int they are."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    return value


class ValueInvalid(ValueError):
    pass


def from_document(model_field: models.Field, value: Any) -> Any:
    """A document value (already of the schema's type) as a model value. Raises ValueInvalid."""
    if value is None:
        return None
    if isinstance(model_field, models.DecimalField):
        try:
            return Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueInvalid("must be a number") from exc
    if isinstance(model_field, models.DateTimeField):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueInvalid("must be a date and time such as 2026-12-24T18:00:00Z") from exc
        if moment.tzinfo is None:
            raise ValueInvalid("needs a time zone offset (Z or +01:00)")
        return moment
    return value


def default_of(model_field: models.Field) -> Any:
    """The value a field takes when a document leaves it out (the model's default)."""
    if model_field.many_to_many:
        return []
    if model_field.has_default():
        return model_field.get_default()
    if model_field.null:
        return None
    if isinstance(model_field, (models.CharField, models.TextField)):
        return ""
    return None
