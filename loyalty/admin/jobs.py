"""The ledger jobs' runs (expiry, release): read-only, written by the jobs themselves."""

from __future__ import annotations

from django.contrib import admin

from ..models import LedgerJobRun
from .base import LargeTableAdmin, ReadOnlyAdmin


@admin.register(LedgerJobRun)
class LedgerJobRunAdmin(ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "job", "as_of", "finished_at", "lots", "points", "members")
    list_filter = ("job",)
    ordering = ("-id",)
