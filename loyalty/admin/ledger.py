"""The ledger's admin, read-only through and through: entries (with the allocations between
debits and lots), activities and idempotency records. Searches are exact look-ups on indexes."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import Activity, Allocation, IdempotencyRecord, LedgerEntry
from .base import LargeTableAdmin, ReadOnlyAdmin, ReadOnlyInline, _as_int_id, _program_ids, truncated_column
from .scope import ProgramScopedAdmin
from .timezones import ProgramTimeZoneAdmin, program_time_column


class _AllocationInline(ReadOnlyInline):
    model = Allocation


class ConsumedLotsInline(_AllocationInline):
    """For a debit: the lots it consumed (or, for a debt, the credits that paid it)."""

    fk_name = "debit"
    verbose_name = "lot consumed"
    verbose_name_plural = "Lots this debit consumed"
    fields = readonly_fields = ("lot", "points", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("lot").order_by("id")


class ConsumingDebitsInline(_AllocationInline):
    """For a lot: the debits that consumed it."""

    fk_name = "lot"
    verbose_name = "consuming debit"
    verbose_name_plural = "Debits that consumed this lot"
    fields = readonly_fields = ("debit", "points", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("debit").order_by("id")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ProgramScopedAdmin, ReadOnlyAdmin, ProgramTimeZoneAdmin, LargeTableAdmin):
    list_display = (
        "id",
        "created",
        "member",
        "kind",
        "points",
        "remaining",
        "expires",
        "short_reason",
        "short_reference",
    )
    list_filter = ("kind", "program")
    list_select_related = ("member", "created_by", "program")
    ordering = ("-id",)
    autocomplete_fields = ("member", "activity", "source_entry", "created_by")
    created = program_time_column("created_at", "created at")
    available = program_time_column("available_at", "available at")
    expires = program_time_column("expires_at", "expires at")
    short_reason = truncated_column("reason", "reason", 30)
    short_reference = truncated_column("reference", "reference", 20)
    search_fields = ("=member__id",)
    search_help_text = "A member id (exact). Open a member to see their ledger."
    inlines = (ConsumedLotsInline, ConsumingDebitsInline)
    fieldsets = (
        (None, {"fields": ("program", "member", "kind", "points", "remaining")}),
        ("Dates", {"fields": ("occurred_at", "created_at", "available_at", "released_at", "expires_at")}),
        ("Origin", {"fields": ("reason", "reference", "activity", "source_entry", "created_by")}),
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        member_id = _as_int_id(term.removeprefix("#"))
        if member_id is None:
            return queryset.none(), False
        return queryset.filter(member_id=member_id), False  # index entry_member_recent

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(Activity)
class ActivityAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "occurred_at", "member", "type", "order_id", "amount", "currency", "channel")
    list_filter = ("type", "channel", "program")
    list_select_related = ("member",)
    ordering = ("-id",)
    autocomplete_fields = ("member",)
    search_fields = ("=order_id",)
    search_help_text = "An order id (exact)."

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # index activity_order (program, order_id) WHERE order_id <> ''
        return queryset.filter(program_id__in=_program_ids(), order_id=term).exclude(order_id=""), False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "created_at", "program", "operation", "key", "member", "response_status")
    list_filter = ("operation", "program")
    list_select_related = ("program", "member")
    ordering = ("-id",)
    autocomplete_fields = ("member",)
    search_fields = ("=key",)
    search_help_text = "An idempotency key (exact)."

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(program_id__in=_program_ids(), key=term), False  # idempotency_unique_key
