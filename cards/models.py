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
    sheet = models.FileField(upload_to="card-sheets/", blank=True, help_text="Printable PDF of the batch.")
    sheet_status = models.CharField(max_length=12, blank=True)

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
            models.CheckConstraint(
                condition=Q(member__isnull=False) | Q(status__in=["unassigned", "void"]),
                name="card_in_use_has_member",
            ),
        ]
        indexes = [
            # Admin filters per program and status.
            models.Index(fields=["program", "status"], name="card_program_status"),
        ]

    def __str__(self) -> str:
        return self.number
