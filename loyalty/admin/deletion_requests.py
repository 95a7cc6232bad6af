"""Members' requests to erase their data (the portal's "My data" page). Staff confirm a request
with the "Confirm" action, which anonymises the member (`services.member_anonymise`: profile
erased, cards blocked, login removed; the ledger stays untouched), or decline it. A request
cannot be added, edited or deleted here: it is the record of what the member asked and what
staff decided."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import services
from ..models import DeletionRequest
from .base import LargeTableAdmin
from .scope import ProgramScopedAdmin


@admin.register(DeletionRequest)
class DeletionRequestAdmin(ProgramScopedAdmin, LargeTableAdmin):
    list_display = ("id", "member", "program", "status", "requested_at", "decided_at", "decided_by")
    list_filter = ("status", "program")
    list_select_related = ("member", "program", "decided_by")
    ordering = ("-id",)
    raw_id_fields = ("member",)
    readonly_fields = ("program", "member", "status", "requested_at", "via", "decided_at", "decided_by", "note")
    actions = ("confirm", "decline")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _decide(self, request: HttpRequest, queryset: QuerySet, *, confirm: bool) -> None:
        decided = 0
        for waiting in queryset.filter(status=DeletionRequest.Status.OPEN).order_by("pk"):
            services.deletion_request_decide(request=waiting, confirm=confirm, actor=request.user)
            self.log_change(request, waiting, [{"changed": {"fields": ["status"]}}])
            decided += 1
        verb = "Confirmed (member anonymised)" if confirm else "Declined"
        plural = "s" if decided != 1 else ""
        self.message_user(request, f"{verb}: {decided} request{plural}.", messages.SUCCESS)

    @admin.action(
        description="Confirm: anonymise the members of the selected requests (cannot be undone)",
        permissions=["change"],
    )
    def confirm(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, confirm=True)

    @admin.action(description="Decline the selected requests", permissions=["change"])
    def decline(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, confirm=False)
