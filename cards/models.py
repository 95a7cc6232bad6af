"""Cards (numbered identifiers of a member) and the batches that create them in bulk."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from loyalty.models import Member, Program


class CardBatch(models.Model):
    """A bulk creation of unassigned physical cards. Progress lives on the row; the card rows
    themselves are the truth (`created` is their count, kept in step by each chunk)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to start"
        RUNNING = "running", "Creating cards"
        DONE = "done", "Done"
        FAILED = "failed", "Failed (can be resumed or discarded)"
        DISCARDED = "discarded", "Discarded"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="card_batches")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5_000_000)])
    note = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    created = models.PositiveIntegerField(default=0, help_text="Cards created so far.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class SheetStatus(models.TextChoices):
        NONE = "", "Not requested"
        PENDING = "pending", "Being built"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    sheet = models.FileField(upload_to="card-sheets/", blank=True, help_text="Printable PDF of the batch.")
    sheet_status = models.CharField(max_length=12, blank=True, choices=SheetStatus.choices, default=SheetStatus.NONE)
    sheet_error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "card batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(created__lte=models.F("quantity")), name="batch_created_within_quantity"
            ),
        ]

    def __str__(self) -> str:
        return f"Batch {self.pk} of {self.quantity} cards ({self.get_status_display()})"

    @property
    def percent(self) -> int:
        return int(100 * self.created / self.quantity) if self.quantity else 100


class Card(models.Model):
    class Status(models.TextChoices):
        UNASSIGNED = "unassigned", "Unassigned (stock)"
        ACTIVE = "active", "Active"
        BLOCKED = "blocked", "Blocked"
        VOID = "void", "Void (discarded batch)"

    class Kind(models.TextChoices):
        PHYSICAL = "physical", "Physical"
        DIGITAL = "digital", "Digital"

    # unique=True also gives a varchar_pattern_ops index: admin search by number prefix.
    number = models.CharField(max_length=32, unique=True, validators=[RegexValidator(r"^\d{8,32}$")])
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="cards", db_index=False)
    member = models.ForeignKey(Member, null=True, blank=True, on_delete=models.PROTECT, related_name="cards")
    batch = models.ForeignKey(CardBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="cards")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PHYSICAL)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UNASSIGNED)
    created_at = models.DateTimeField()
    assigned_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    blocked_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaces")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(status="unassigned") & Q(member__isnull=True)) | ~Q(status="unassigned"),
                name="card_unassigned_has_no_member",
            ),
            # An active card identifies a member; stock may be blocked (a stolen box of cards).
            models.CheckConstraint(
                condition=Q(member__isnull=False) | Q(status__in=["unassigned", "void", "blocked"]),
                name="card_in_use_has_member_v2",
            ),
        ]
        indexes = [
            # Admin filters per program and status.
            models.Index(fields=["program", "status"], name="card_program_status"),
        ]

    def __str__(self) -> str:
        return self.number


class CardEvent(models.Model):
    """Who did what to a card, and when (STYLE rule 8), written by `cards.services._record_event`."""

    class Kind(models.TextChoices):
        ISSUED = "issued", "Digital card issued"
        ASSIGNED = "assigned", "Assigned to a member"
        ENROLLED = "enrolled", "Enrolled an anonymous member"
        CLAIMED = "claimed", "Claimed by the customer"
        MERGED = "merged", "Claimed into an existing member"
        BLOCKED = "blocked", "Blocked"
        UNBLOCKED = "unblocked", "Unblocked"
        REPLACED = "replaced", "Replaced"
        VOIDED = "voided", "Voided (batch discarded)"
        IMPORTED = "imported", "Assigned by a member import"

    card = models.ForeignKey(Card, on_delete=models.PROTECT, related_name="events", db_index=False)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField()
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [models.Index(fields=["card", "-id"], name="cardevent_card_recent")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.card_id})"


class CardBatchEvent(models.Model):
    """Who did what to a batch, and when."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        RESUMED = "resumed", "Resumed"
        DISCARDED = "discarded", "Discarded"
        FAILED = "failed", "Failed"
        DONE = "done", "Done"
        SHEET_REQUESTED = "sheet_requested", "PDF sheet requested"

    batch = models.ForeignKey(CardBatch, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField()
    note = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} (batch {self.batch_id})"


class MemberImport(models.Model):
    """A CSV import of members into a program (cards.importing): the kept upload, what its dry
    run found and whether it was applied. The file stays in storage so that "Import" applies
    exactly the previewed bytes (the checksum is compared again) and staff can look back."""

    class Status(models.TextChoices):
        DRY_RUN = "dry_run", "Checked (dry run)"
        APPLIED = "applied", "Applied"
        FAILED = "failed", "Refused (errors)"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="member_imports")
    file = models.FileField(upload_to="member-imports/%Y/%m/", max_length=255)
    file_name = models.CharField(max_length=255, help_text="Name of the file as uploaded.")
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the uploaded bytes.")
    size = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRY_RUN)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0, help_text="Data rows in the file.")
    new_count = models.PositiveIntegerField(default=0, help_text="Members the import creates.")
    updated_count = models.PositiveIntegerField(default=0, help_text="Existing members whose profile changes.")
    unchanged_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    opening_balance_total = models.PositiveBigIntegerField(default=0, help_text="Points credited to new members.")
    opening_balance_members = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="[{line, field, message, value}], the first 1000.")
    warnings = models.JSONField(default=list, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="Columns, card counts, tiers, sample changes.")
    opening_balance_counts_for_tier = models.BooleanField(
        default=False,
        help_text="Opening balances are posted as earned points (lifetime earned, tier metric).",
    )

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Past imports of a program (admin list) and "this file was applied before" (checksum).
            models.Index(fields=["program", "checksum"], name="memberimport_program_checksum"),
        ]

    def __str__(self) -> str:
        return f"Import #{self.pk} of {self.file_name}"

    @property
    def can_apply(self) -> bool:
        return self.status == self.Status.DRY_RUN and self.error_count == 0
