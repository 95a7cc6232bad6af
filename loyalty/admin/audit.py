"""The staff audit trail, the adjustment requests waiting for approval and members' notes:
read-only lists (the rows are written by `loyalty.services.audit` and
`loyalty.services.adjustments`; requests are decided on the dashboard's approval page)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from ..models import AdjustmentRequest, MemberNote, StaffAction
from .base import LargeTableAdmin, ReadOnlyAdmin
from .scope import ProgramScopedAdmin

# The dashboard's pages (a higher app), reversed by name: loyalty imports none of it.
MEMBER_PAGE_URL = "dashboard:member"
APPROVALS_URL = "dashboard:adjustment_requests"


def member_page_link(member_id: int | None, label: str) -> str:
    if member_id is None:
        return "—"
    return format_html('<a href="{}">{}</a>', reverse(MEMBER_PAGE_URL, args=[member_id]), label)


@admin.register(StaffAction)
class StaffActionAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "at", "actor", "action", "member_link", "program", "reason")
    list_filter = ("action", "program")
    list_select_related = ("actor", "program", "member")
    ordering = ("-id",)
    search_fields = ("=member__id", "=actor__username")
    search_help_text = "A member id or a staff user name (exact)."

    @admin.display(description="member")
    def member_link(self, obj: StaffAction) -> str:
        return member_page_link(obj.member_id, str(obj.member) if obj.member_id else "")


@admin.register(AdjustmentRequest)
class AdjustmentRequestAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    """Shows the pending requests first (the list opens filtered on them); each row links to the
    approvals page, where another staff user approves or rejects it."""

    list_display = (
        "id",
        "status",
        "member_link",
        "points",
        "reason",
        "requested_by",
        "requested_at",
        "decided_by",
        "decide",
    )
    list_filter = ("status", "program")
    list_select_related = ("member", "requested_by", "decided_by", "program")
    ordering = ("-id",)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not request.GET:
            return HttpResponseRedirect(f"{request.path}?status__exact=pending")
        return super().changelist_view(request, extra_context)

    @admin.display(description="member")
    def member_link(self, obj: AdjustmentRequest) -> str:
        return member_page_link(obj.member_id, str(obj.member))

    @admin.display(description="")
    def decide(self, obj: AdjustmentRequest) -> str:
        if obj.status != AdjustmentRequest.Status.PENDING:
            return ""
        return format_html('<a href="{}#request-{}">Approve or reject</a>', reverse(APPROVALS_URL), obj.pk)


@admin.register(MemberNote)
class MemberNoteAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    list_display = ("id", "created_at", "author", "member_link", "text")
    list_select_related = ("author", "member")
    ordering = ("-id",)

    @admin.display(description="member")
    def member_link(self, obj: MemberNote) -> str:
        return member_page_link(obj.member_id, str(obj.member))
