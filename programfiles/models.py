"""Drafts and published versions of a program's configuration (docs/drafts.md).

A draft holds the draft-able sections of a program document (`DRAFT_SECTIONS`: tiers,
rewards, earning rules, automations) as plain data, never as rows of the live tables: nothing
that earns, redeems or is shown to members reads it. `base` is the same sections of the live
program when the draft was taken; publishing refuses a draft whose base no longer matches the
live program (someone changed the live configuration since). A version is what one publish
made live: the whole document after it, and the changes against what was live before.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from loyalty.models import Program

# The sections a draft holds; everything else of the program stays as it is live.
DRAFT_SECTIONS = ("tiers", "rewards", "earning_rules", "automations")


class ProgramDraft(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PUBLISHED = "published", "Published"
        DISCARDED = "discarded", "Discarded"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    sections = models.JSONField(default=dict, help_text="The draft's tiers, rewards, earning rules and automations.")
    base = models.JSONField(default=dict, help_text="The same sections as they were live when the draft was taken.")
    restored_from = models.ForeignKey(
        "ProgramVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "configuration draft"
        constraints = [
            # One open draft per program: a second one would publish over the first.
            models.UniqueConstraint(fields=["program"], condition=Q(status="open"), name="draft_one_open_per_program"),
        ]
        indexes = [models.Index(fields=["program", "-id"], name="draft_program")]
        permissions = [("publish_programdraft", "Can publish a configuration draft and restore a version")]

    def __str__(self) -> str:
        return f"Draft #{self.pk} of {self.program}" if self.pk else "New draft"


class ProgramVersion(models.Model):
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    number = models.PositiveIntegerField()
    document = models.JSONField(help_text="The program's whole configuration as this publish left it.")
    changes = models.JSONField(default=list, help_text="What this publish changed, one entry per field.")
    note = models.CharField(max_length=255, blank=True)
    draft = models.OneToOneField(ProgramDraft, null=True, blank=True, on_delete=models.PROTECT, related_name="version")
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField()

    class Meta:
        verbose_name = "published version"
        constraints = [models.UniqueConstraint(fields=["program", "number"], name="version_number_per_program")]
        ordering = ["program", "-number"]

    def __str__(self) -> str:
        return f"Version {self.number} of {self.program}"
