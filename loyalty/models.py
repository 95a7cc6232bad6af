"""The loyalty core: programs, members (the points accounts), activities and the ledger.

The ledger is append-only. A credit entry is a *lot*: it carries the points, the moment they
become available (`available_at`; `released_at` is stamped once when they do) and the moment
they expire. A debit entry records, through `Allocation` rows, which lots it consumed and how
much of each. Only `remaining` (and a lot's write-once `released_at`) ever changes after an
entry is written; a database trigger (migration 0002) refuses every other UPDATE and every
DELETE. All writes go through `loyalty.services`.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import zoneinfo
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import ExtractDay, ExtractMonth, Lower, Upper
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey

REFERRAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# The unique index on (program, lower(email)) of non-empty emails; services tell its violation
# from the others' by this name.
MEMBER_UNIQUE_EMAIL = "member_unique_email"
# The member columns the admin searches by part (trigram indexes, `Member.Meta.indexes`).
MEMBER_TRIGRAM_COLUMNS = ("email", "first_name", "last_name")


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not a known time zone.") from exc


# A shop's origin for the widget's frame: https (http only for this machine, for trying it out).
WIDGET_ORIGIN = re.compile(
    r"https://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?|http://(localhost|127\.0\.0\.1)(:\d{1,5})?"
)


def widget_origin_list(value: str) -> list[str]:
    """The origins of `Program.widget_origins` (one a line; blank lines ignored)."""
    return [line.strip().rstrip("/").lower() for line in (value or "").splitlines() if line.strip()]


def validate_widget_origins(value: str) -> None:
    bad = [origin for origin in widget_origin_list(value) if not WIDGET_ORIGIN.fullmatch(origin)]
    if bad:
        raise ValidationError(
            f"Not an origin: {', '.join(bad)}. Write one origin a line, scheme and host only, "
            "e.g. https://shop.example.com (http only for localhost)."
        )


# The languages members are written to in (emails, the portal): English and French ship complete.
LANGUAGES = [("en", "English"), ("fr", "Français")]


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(8))


class Program(models.Model):
    """A merchant's loyalty program and the settings every rule reads."""

    class TierMetric(models.TextChoices):
        POINTS_EARNED = "points_earned", "Points earned"
        AMOUNT_SPENT = "amount_spent", "Amount spent"
        ORDER_COUNT = "order_count", "Number of orders"

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    points_name = models.CharField(max_length=40, default="points")
    currency = models.CharField(max_length=3, default="EUR", help_text="ISO 4217 code, e.g. EUR.")
    earn_rate = models.DecimalField(
        max_digits=9,
        decimal_places=4,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Points per currency unit spent (rounded down).",
    )
    min_redemption = models.PositiveIntegerField(
        default=0, help_text="A redemption must spend at least this many points."
    )
    expiry_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Points expire at the end of this many days after the activity; empty = never.",
    )
    pending_days = models.PositiveIntegerField(
        default=0, help_text="Return window: points become available this many days after the activity."
    )
    tier_metric = models.CharField(max_length=20, choices=TierMetric.choices, default=TierMetric.POINTS_EARNED)

    class TierWindow(models.TextChoices):
        ROLLING = "rolling", "Rolling window of N days"
        CALENDAR_YEAR = "calendar_year", "Calendar year (program time zone)"
        LIFETIME = "lifetime", "Lifetime"

    tier_window = models.CharField(max_length=16, choices=TierWindow.choices, default=TierWindow.LIFETIME)
    tier_window_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days of the rolling window of the tier metric."
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    card_prefix = models.CharField(
        max_length=8,
        default="7",
        validators=[RegexValidator(r"^\d{1,8}$", "Digits only.")],
        help_text="First digits of every card number of this program.",
    )
    card_number_length = models.PositiveSmallIntegerField(
        default=16,
        validators=[MinValueValidator(12), MaxValueValidator(19)],
        help_text="Digits of a card number, prefix and check digit included.",
    )
    enrol_on_first_purchase = models.BooleanField(
        default=True,
        help_text="A purchase reported over the API for an unknown external id enrols that customer "
        "(with the email and names the shop sends) in the same transaction; off: such a purchase is refused "
        "(404) until the shop enrols the customer.",
    )
    # Branding and language: what members see (emails, the portal). docs/emails.md.
    brand_color = models.CharField(
        max_length=7,
        default="#1F6FEB",
        db_default="#1F6FEB",  # raw SQL inserts (bulk loads, benches) get it too
        validators=[RegexValidator(r"^#[0-9A-Fa-f]{6}$", "A colour as #RRGGBB.")],
        help_text="The program's main colour (#RRGGBB): buttons, headers, links.",
    )
    logo_url = models.URLField(
        max_length=500,
        blank=True,
        default="",
        db_default="",
        help_text="An https address of the logo (PNG or SVG, about 200 x 60 px).",
    )
    language = models.CharField(
        max_length=8,
        choices=LANGUAGES,
        default="en",
        db_default="en",
        help_text="The language of members who have not chosen one.",
    )
    terms = models.TextField(
        blank=True,
        default="",
        db_default="",
        help_text="The program's terms and conditions, shown on the portal's terms page (plain text; "
        "empty lines separate paragraphs). Empty: no terms page.",
    )
    # The shop widget (docs/portal.md, "The shop widget"): the shop's backend signs its customer's
    # id with this secret; empty = the widget is off. Set and rotated from the program's admin.
    widget_secret = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text="The secret the shop signs widget tokens with. Empty: the widget is off.",
    )
    widget_origins = models.TextField(
        blank=True,
        default="",
        db_default="",
        validators=[validate_widget_origins],
        help_text="The shop's origins allowed to show the widget in a frame, one per line "
        "(e.g. https://shop.example.com). Empty: the framed widget is refused everywhere.",
    )
    # Guardrails on staff adjustments (docs/back-office.md, "A member's page"). Points are
    # compared by size: -10,000 and +10,000 meet the same checks.
    adjustment_confirm_above = models.PositiveIntegerField(
        default=1_000,
        db_default=1_000,
        help_text="An adjustment of more than this many points (either sign), or one that leaves the member "
        "owing points, asks the staff user to confirm it, with the new balance and the debt it would leave.",
    )
    adjustment_approval_above = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=10_000,
        db_default=10_000,
        help_text="An adjustment of more than this many points waits for a second staff member's approval. "
        "Empty: never.",
    )
    manager_adjustment_limit = models.PositiveIntegerField(
        default=10_000,
        db_default=10_000,
        help_text="The most a Manager may adjust in one go; more waits for another staff member's approval.",
    )
    support_adjustment_limit = models.PositiveIntegerField(
        default=500,
        db_default=500,
        help_text="The most a Support user may adjust in one go; more waits for another staff member's approval.",
    )
    # Finance: what the outstanding points are worth and the IFRS 15 inputs (docs/liability.md).
    point_value = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        default=Decimal("0"),
        db_default=Decimal("0"),  # raw SQL inserts (bulk loads, benches) get it too
        validators=[MinValueValidator(Decimal("0"))],
        help_text="What one point is worth in the program's currency (what a member gets for it), "
        "e.g. 0.01. The liability report values outstanding points at this.",
    )
    point_standalone_price = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="IFRS 15: stand-alone selling price of one point before the expected-redemption "
        "adjustment, if it differs from the point value. Empty: the point value.",
    )
    expected_redemption_rate = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="IFRS 15: share of points expected to be redeemed, from 0 to 1 (e.g. 0.97). "
        "Empty: 1 minus the breakage observed on settled earn months (1 until a month is settled).",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            # The dashboard and the reports (issue 13) read every figure of a program: their own
            # permissions, held by the Owner and Manager roles (docs/back-office.md).
            ("view_reports", "Can see the dashboard and the reports"),
            ("view_financial_reports", "Can view the liability, breakage and deferred-revenue reports"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(earn_rate__gte=0), name="program_earn_rate_non_negative"),
            models.CheckConstraint(condition=Q(point_value__gte=0), name="program_point_value_non_negative"),
            models.CheckConstraint(
                condition=Q(point_standalone_price__isnull=True) | Q(point_standalone_price__gte=0),
                name="program_point_ssp_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(expected_redemption_rate__isnull=True)
                | (Q(expected_redemption_rate__gte=0) & Q(expected_redemption_rate__lte=1)),
                name="program_redemption_rate_0_1",
            ),
            models.CheckConstraint(
                condition=Q(expiry_days__isnull=True) | Q(expiry_days__gt=0), name="program_expiry_days_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def local_date(self, moment: dt.datetime) -> dt.date:
        """The calendar day of `moment` in the program's time zone."""
        return moment.astimezone(self.tz).date()

    def start_of_day(self, day: dt.date) -> dt.datetime:
        """Midnight at the start of `day` in the program's time zone (aware)."""
        return dt.datetime.combine(day, dt.time.min, tzinfo=self.tz)

    def expiry_for(self, occurred_at: dt.datetime) -> dt.datetime | None:
        """Points of an activity on local day D stay valid through day D + expiry_days."""
        if self.expiry_days is None:
            return None
        last_day = self.local_date(occurred_at) + dt.timedelta(days=self.expiry_days)
        return self.start_of_day(last_day + dt.timedelta(days=1))

    def availability_for(self, occurred_at: dt.datetime) -> dt.datetime:
        return occurred_at + dt.timedelta(days=self.pending_days)

    def points_for_amount(self, amount: Decimal) -> int:
        """Base points for spending `amount` at the program's earn rate, rounded down."""
        return int((Decimal(amount) * self.earn_rate).to_integral_value(rounding=ROUND_FLOOR))


class Member(models.Model):
    """A customer enrolled in a program. The member is the points account.

    The balance columns are a cache of the ledger, changed only in SQL by `loyalty.services`
    while the row is locked; `verify_ledger` proves them against the entries.
    `available` is negative only while the member carries a debt (rule 3).
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        BLOCKED = "blocked", "Blocked"

    class Channel(models.TextChoices):
        ONLINE = "online", "Online shop"
        POS = "pos", "Point of sale"
        ADMIN = "admin", "Staff"
        IMPORT = "import", "Import"
        API = "api", "API"
        CARD = "card", "Unassigned card"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="members")
    external_id = models.CharField(max_length=255, null=True, blank=True, help_text="The shop's customer id.")
    email = models.EmailField(blank=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    birthday = models.DateField(null=True, blank=True)
    referral_code = models.CharField(max_length=16, default=new_referral_code)
    referred_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="referrals")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    enrollment_channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.ONLINE)
    email_consent = models.BooleanField(default=False)
    language = models.CharField(
        max_length=8,
        choices=LANGUAGES,
        blank=True,
        default="",
        db_default="",  # both: instances carry "" (bulk COPY), raw SQL inserts get it from the column
        help_text="Empty: the program's language.",
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="loyalty_member"
    )
    enrolled_at = models.DateTimeField()
    anonymised_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set when the member's personal data was erased (`member_anonymise`); the points stay.",
    )

    # Cached balances (see the class docstring).
    available = models.BigIntegerField(default=0, editable=False)
    pending = models.BigIntegerField(default=0, editable=False)
    lifetime_earned = models.BigIntegerField(default=0, editable=False)
    redeemed = models.BigIntegerField(default=0, editable=False)
    expired = models.BigIntegerField(default=0, editable=False)

    class Meta:
        constraints = [
            # The shop's id identifies one member per program (enrol is idempotent on it).
            models.UniqueConstraint(
                fields=["program", "external_id"],
                name="member_unique_external_id",
                condition=Q(external_id__isnull=False),
            ),
            models.UniqueConstraint(fields=["program", "referral_code"], name="member_unique_referral_code"),
            # One member per email in a program, whatever its case (docs/decisions.md). The
            # services check it first for a clear error; this index decides races.
            models.UniqueConstraint(
                F("program"),
                Lower("email"),
                name=MEMBER_UNIQUE_EMAIL,
                condition=~Q(email=""),
                violation_error_code="duplicate_email",
                violation_error_message="A member of this program already has this email.",
            ),
            models.CheckConstraint(condition=Q(pending__gte=0), name="member_pending_non_negative"),
            models.CheckConstraint(condition=Q(lifetime_earned__gte=0), name="member_lifetime_non_negative"),
            models.CheckConstraint(condition=Q(redeemed__gte=0), name="member_redeemed_non_negative"),
            models.CheckConstraint(condition=Q(expired__gte=0), name="member_expired_non_negative"),
        ]
        indexes = [
            # Admin and API look-ups by email within a program.
            models.Index(fields=["program", "email"], name="member_program_email"),
            # The admin's member search: part of an email or a name, case-insensitive. Django's
            # `icontains` is `UPPER(col::text) LIKE UPPER('%term%')`, which these trigram
            # indexes (pg_trgm) on the same expression answer (docs/back-office.md).
            *[
                GinIndex(OpClass(Upper(column), name="gin_trgm_ops"), name=f"member_{column}_trgm")
                for column in MEMBER_TRIGRAM_COLUMNS
            ],
            # The admin's "blocked" filter: few rows among millions.
            models.Index(fields=["id"], name="member_blocked", condition=Q(status="blocked")),
            # award_birthdays: the members whose birthday is a given day of the year.
            models.Index(
                "program",
                ExtractMonth("birthday"),
                ExtractDay("birthday"),
                name="member_birthday_day",
                condition=Q(birthday__isnull=False),
            ),
        ]
        permissions = [
            ("adjust_points", "Can adjust a member's points by hand"),
            ("transfer_points", "Can transfer points between members"),
            ("refund_order", "Can refund a member's order from the back-office"),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or self.external_id or f"member {self.pk}"

    @property
    def is_blocked(self) -> bool:
        return self.status == self.Status.BLOCKED

    @property
    def debt(self) -> int:
        return max(0, -self.available)


class Activity(models.Model):
    """Something a member did that may earn points. Stored once; rules read it."""

    class Type(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        REFUND = "refund", "Refund"
        SIGNUP = "signup", "Signup"
        BIRTHDAY = "birthday", "Birthday"
        REFERRAL = "referral", "Referral"
        SOCIAL_SHARE = "social_share", "Social share"
        STORE_VISIT = "store_visit", "Store visit"
        REVIEW = "review", "Review"

    class Channel(models.TextChoices):
        ONLINE = "online", "Online"
        POS = "pos", "Point of sale"

    # FK indexes are replaced by the composite/partial indexes in Meta (tables of 10^7+ rows).
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="activities", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="activities", db_index=False)
    type = models.CharField(max_length=40, help_text="A built-in type or a custom event name.")
    occurred_at = models.DateTimeField()
    # When the activity reached us (the caller's `now`): daily caps and velocity limits count
    # by it as well as by `occurred_at` (docs/fraud.md).
    reported_at = models.DateTimeField(default=timezone.now, editable=False)
    order_id = models.CharField(max_length=255, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True)
    items = models.JSONField(default=list, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "activities"
        constraints = [
            # One purchase per order: refunds find the order through this.
            models.UniqueConstraint(
                fields=["program", "order_id"],
                name="activity_unique_purchase_order",
                condition=Q(type="purchase") & ~Q(order_id=""),
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gte=0), name="activity_amount_non_negative"
            ),
        ]
        indexes = [
            # A member's activity view, newest first.
            models.Index(fields=["member", "-occurred_at"], name="activity_member_recent"),
            # Refunds of an order (sum of refunded amounts).
            models.Index(fields=["program", "order_id"], name="activity_order", condition=~Q(order_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.order_id}".strip()


class LedgerEntry(models.Model):
    """One change of a member's points. Never updated or deleted, `remaining` aside.

    Credits (points > 0) are lots: `remaining` is what is left to spend (0..points).
    Debits (points < 0) carry in `remaining` the part not yet covered by lots (points..0):
    that is a debt, which later credits pay first. `available_at`/`released_at` and
    `expires_at` are set on credits only.
    """

    class Kind(models.TextChoices):
        EARN = "earn", "Earn"
        ADJUST = "adjust", "Adjustment"
        REDEEM = "redeem", "Redemption"
        EXPIRE = "expire", "Expiry"
        REVERSAL = "reversal", "Reversal"
        TRANSFER = "transfer", "Transfer"

    # FK indexes are replaced by the partial indexes in Meta: at 5*10^8 rows each index counts.
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="entries", db_index=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    points = models.BigIntegerField()
    remaining = models.BigIntegerField()
    created_at = models.DateTimeField()
    occurred_at = models.DateTimeField(help_text="When the activity happened; dates the points.")
    available_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    reference = models.CharField(max_length=255, blank=True, help_text="Order id, coupon code, transfer id...")
    activity = models.ForeignKey(
        Activity, null=True, blank=True, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    source_entry = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="derived_entries",
        db_index=False,
        help_text="The debit whose points this credit gives back or moves.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="entry_points_non_zero"),
            models.CheckConstraint(
                condition=(Q(points__gt=0) & Q(remaining__gte=0) & Q(remaining__lte=models.F("points")))
                | (Q(points__lt=0) & Q(remaining__lte=0) & Q(remaining__gte=models.F("points"))),
                name="entry_remaining_within_points",
            ),
            models.CheckConstraint(
                condition=Q(points__gt=0)
                | (Q(available_at__isnull=True) & Q(released_at__isnull=True) & Q(expires_at__isnull=True)),
                name="entry_debit_has_no_lot_dates",
            ),
            models.CheckConstraint(
                condition=Q(points__lt=0) | Q(available_at__isnull=False), name="entry_credit_has_available_at"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["earn", "adjust", "reversal", "transfer"]) | Q(points__lt=0),
                name="entry_kind_sign_credit",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["adjust", "redeem", "expire", "reversal", "transfer"]) | Q(points__gt=0),
                name="entry_kind_sign_debit",
            ),
        ]
        indexes = [
            # The member's history (API ledger, admin), newest first.
            models.Index(fields=["member", "-id"], name="entry_member_recent"),
            # The liability roll-forward (dashboard.liability): a program's entries written before a
            # moment, summed by month and kind from the index alone (docs/performance.md).
            models.Index(fields=["program", "created_at"], include=["kind", "points"], name="entry_program_created"),
            # Open lots of a member: debits consume them; partial, so it stays small.
            models.Index(fields=["member", "expires_at"], name="entry_open_lots", condition=Q(remaining__gt=0)),
            # expire_points: due lots across all members.
            models.Index(
                fields=["expires_at"],
                name="entry_expiring_lots",
                condition=Q(remaining__gt=0) & Q(expires_at__isnull=False),
            ),
            # release_pending_points: lots still pending.
            models.Index(
                fields=["available_at"],
                name="entry_pending_lots",
                condition=Q(released_at__isnull=True) & Q(points__gt=0),
            ),
            # Debts (unpaid debit parts) of a member, paid first by credits.
            models.Index(fields=["member", "id"], name="entry_open_debts", condition=Q(remaining__lt=0)),
            # Refunds: the earn entries of an order's purchase activity.
            models.Index(fields=["activity"], name="entry_activity", condition=Q(activity__isnull=False)),
            # Cancelling a redemption / finding what a debit gave back.
            models.Index(fields=["source_entry"], name="entry_source", condition=Q(source_entry__isnull=False)),
            # The admin's "by kind" filter on every kind but the earns (most rows, found at once
            # walking the primary key): newest first, and the capped count, without a table scan
            # for a kind that is rare or has no row (docs/performance.md, "Staff change lists").
            models.Index(fields=["kind", "-id"], name="entry_kind_recent", condition=~Q(kind="earn")),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.points:+d} (member {self.member_id})"

    @property
    def is_credit(self) -> bool:
        return self.points > 0


class DeletionRequest(models.Model):
    """A member asked for their data to be erased (the portal's "My data" page). Staff confirm
    it in the admin, which anonymises the member (`loyalty.services.member_anonymise`), or
    decline it with a note. Kept after the decision: the record that the request was honoured."""

    class Status(models.TextChoices):
        OPEN = "open", "Waiting for staff"
        CONFIRMED = "confirmed", "Confirmed: member anonymised"
        DECLINED = "declined", "Declined"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="deletion_requests")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    requested_at = models.DateTimeField()
    via = models.CharField(max_length=20, default="portal")
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=255, blank=True, help_text="Staff's note on the decision (internal).")

    class Meta:
        constraints = [
            # One open request per member: asking again while one waits changes nothing.
            models.UniqueConstraint(fields=["member"], name="deletion_request_one_open", condition=Q(status="open")),
        ]
        indexes = [
            # The admin's queue: the open requests, oldest first.
            models.Index(fields=["program", "requested_at"], name="deletion_request_open", condition=Q(status="open")),
        ]

    def __str__(self) -> str:
        return f"Deletion request {self.pk} (member {self.member_id}, {self.status})"


class Allocation(models.Model):
    """`points` of lot `lot` consumed by debit `debit` (spending, expiry, transfer, debt payment)."""

    debit = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations")
    lot = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="consumptions")
    points = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="allocation_points_positive"),
            models.UniqueConstraint(fields=["debit", "lot"], name="allocation_unique_pair"),
        ]

    def __str__(self) -> str:
        return f"{self.points} of lot {self.lot_id} to debit {self.debit_id}"


class IdempotencyRecord(models.Model):
    """The first result of an externally triggered write, keyed per program (rule 4).

    The unique (program, key) index serialises concurrent requests with one key: the second
    insert waits for the first transaction and then finds its row.
    """

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    operation = models.CharField(max_length=60)
    request_hash = models.CharField(max_length=64)
    member = models.ForeignKey(Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    entry_ids = models.JSONField(default=list)
    result = models.JSONField(default=dict, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["program", "key"], name="idempotency_unique_key")]

    def __str__(self) -> str:
        return f"{self.operation} {self.key}"


class LedgerJobRun(models.Model):
    """A run of a scheduled ledger job: who/what/when, for operators (not needed for correctness)."""

    job = models.CharField(max_length=60)
    as_of = models.DateTimeField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    lots = models.BigIntegerField(default=0)
    points = models.BigIntegerField(default=0)
    members = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["job", "-started_at"], name="jobrun_recent")]

    def __str__(self) -> str:
        return f"{self.job} as of {self.as_of:%Y-%m-%d %H:%M}"


def default_api_key_scopes() -> list[str]:
    return ["read", "write"]


class ProgramAPIKey(AbstractAPIKey):
    """An integration's key to the REST API (docs/api.md): one program, stored hashed (the library's
    SHA-512 of a random secret; only the 8-character `prefix` is kept in clear, shown in the
    admin and used to find the row), revocable (irreversibly) and optionally expiring.

    `scopes` says what the key may do: `read` (GET), `write` (POST/PATCH), `adjust` (manual
    point adjustments). Every API look-up is filtered by `program` (`loyalty.api`).
    """

    class Scope(models.TextChoices):
        READ = "read", "Read (GET)"
        WRITE = "write", "Write (POST, PATCH)"
        ADJUST = "adjust", "Adjust points by hand"

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="api_keys")
    scopes = ArrayField(
        models.CharField(max_length=10, choices=Scope.choices),
        default=default_api_key_scopes,
        blank=True,
        help_text="What the key may do: read (GET), write (POST, PATCH), adjust (manual adjustments).",
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        constraints = [
            models.CheckConstraint(
                condition=Q(scopes__contained_by=["read", "write", "adjust"]), name="api_key_known_scopes"
            ),
        ]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class StaffProgram(models.Model):
    """A member of staff limited to a program (docs/back-office.md, "Roles and programs").

    A staff user with no row sees every program (a merchant with one brand never sets
    anything); with rows, only those programs, in every admin list, page, autocomplete and
    report (`loyalty.staff_scope.programs_for`). Superusers always see every program.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_programs")
    # PROTECT: a row removed with its program would leave the user with no row, i.e. every program.
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="staff")

    class Meta:
        verbose_name = "program this user works on"
        verbose_name_plural = "programs this user works on (none: every program)"
        constraints = [models.UniqueConstraint(fields=["user", "program"], name="staff_program_unique")]

    def __str__(self) -> str:
        return f"{self.user} · {self.program}"


class StaffAction(models.Model):
    """One thing a member of staff did to a member or a program (the back-office's audit
    trail): who, what, on which member, when, why, and the facts (`details`). Append-only: a
    database trigger refuses UPDATE and DELETE (migration 0019). Written by
    `loyalty.services.audit.staff_action_record`, in the transaction of the action."""

    class Action(models.TextChoices):
        ADJUST = "adjust", "Adjusted points"
        ADJUST_REQUESTED = "adjust_requested", "Asked for an adjustment's approval"
        ADJUST_APPROVED = "adjust_approved", "Approved an adjustment"
        ADJUST_REJECTED = "adjust_rejected", "Rejected an adjustment"
        TRANSFER = "transfer", "Transferred points"
        BLOCK = "block", "Blocked the member"
        UNBLOCK = "unblock", "Unblocked the member"
        CARD_REPLACE = "card_replace", "Replaced a card"
        REDEEM = "redeem", "Redeemed a reward"
        COUPON_USE = "coupon_use", "Marked a coupon used"
        COUPON_CANCEL = "coupon_cancel", "Cancelled a coupon"
        EMAIL_RESEND = "email_resend", "Sent an email again"
        REFUND = "refund", "Refunded an order"
        NOTE = "note", "Added a note"
        AUTOMATION_ACTIVATE = "automation_activated", "Switched an automation on"
        AUTOMATION_DEACTIVATE = "automation_stopped", "Switched an automation off"
        DRAFT_PUBLISH = "draft_publish", "Published a configuration draft"
        VERSION_RESTORE = "version_restore", "Restored a configuration version as a draft"
        DRAFT_DISCARD = "draft_discard", "Discarded a configuration draft"
        HOLD_RELEASE = "hold_release", "Released points held for review"
        HOLD_REJECT = "hold_reject", "Rejected points held for review"

    # Actions that move points or money: they need a reason.
    REASON_REQUIRED = frozenset({"adjust", "adjust_requested", "adjust_rejected", "transfer", "block", "refund"})

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="staff_actions", db_index=False
    )
    # Empty only for what an integration's API key did (its prefix and name are in `details`).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    at = models.DateTimeField()
    reason = models.CharField(max_length=255, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "staff action"
        indexes = [
            # A member's audit trail on their page, newest first.
            models.Index(fields=["member", "-id"], name="staff_action_member", condition=Q(member__isnull=False)),
            # The admin's list, per program, newest first.
            models.Index(fields=["program", "-id"], name="staff_action_program"),
        ]

    def __str__(self) -> str:
        by = self.actor if self.actor_id else f"API key {self.details.get('api_key', '?')}"
        return f"{self.get_action_display()} by {by} ({self.at:%Y-%m-%d %H:%M})"


class AdjustmentRequest(models.Model):
    """An adjustment above the program's approval threshold, or above its requester's limit:
    it waits until another staff user with `loyalty.approve_adjustment` approves it (then it
    is posted, once) or rejects it (with a reason). Never decided by its requester."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        APPROVED = "approved", "Approved and posted"
        REJECTED = "rejected", "Rejected"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="adjustment_requests")
    points = models.BigIntegerField()
    reason = models.CharField(max_length=255)
    notify_member = models.BooleanField(default=False)
    why = models.CharField(max_length=255, blank=True, help_text="Why it needs an approval.")
    key = models.CharField(max_length=255, help_text="The requesting form's idempotency key (sent twice: one request).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.CharField(max_length=255, blank=True)
    entry = models.ForeignKey(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )

    class Meta:
        permissions = [("approve_adjustment", "Can approve or reject another staff member's adjustment")]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="adjustment_request_points_non_zero"),
            models.UniqueConstraint(fields=["program", "key"], name="adjustment_request_unique_key"),
            # Four eyes: whoever decides is not whoever asked.
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="adjustment_request_not_self_decided",
            ),
            models.CheckConstraint(
                condition=Q(status="pending") | Q(decided_by__isnull=False, decided_at__isnull=False),
                name="adjustment_request_decided_has_decider",
            ),
        ]
        indexes = [
            models.Index(fields=["program", "id"], name="adjustment_request_pending", condition=Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"Adjustment of {self.points:+d} for {self.member} ({self.get_status_display().lower()})"


class MemberNote(models.Model):
    """A note staff keep about a member (shown on the member's page; adding one is audited)."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="notes", db_index=False)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    text = models.TextField(max_length=2000)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["member", "-id"], name="member_note_recent")]

    def __str__(self) -> str:
        return f"Note {self.pk} on member {self.member_id}"
