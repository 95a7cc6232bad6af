"""Members' requests to erase their data (the portal's "My data" page). Staff confirm a request
with the "Confirm" action, which anonymises the member (`services.member_anonymise`: profile
erased, cards blocked, login removed; the ledger stays untouched), or decline it with a reason
(a second step asks for it). Either way the member is told by email (notifications'
deletion_confirmed / deletion_declined kinds, queued in the decision's transaction). A request
cannot be added, edited or deleted here: it is the record of what the member asked and what
staff decided."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

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
    autocomplete_fields = ("member",)
    readonly_fields = ("program", "member", "status", "requested_at", "via", "decided_at", "decided_by", "note")
    actions = ("confirm", "decline")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _decide(self, request: HttpRequest, queryset: QuerySet, *, confirm: bool, note: str = "") -> None:
        decided = 0
        for waiting in queryset.filter(status=DeletionRequest.Status.OPEN).order_by("pk"):
            services.deletion_request_decide(request=waiting, confirm=confirm, actor=request.user, note=note)
            self.log_change(request, waiting, [{"changed": {"fields": ["status"]}}])
            decided += 1
        verb = "Confirmed (member anonymised)" if confirm else "Declined"
        plural = "s" if decided != 1 else ""
        self.message_user(
            request, f"{verb}: {decided} request{plural}. Each member is told by email.", messages.SUCCESS
        )

    @admin.action(
        description="Confirm: anonymise the members of the selected requests (cannot be undone)",
        permissions=["change"],
    )
    def confirm(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, confirm=True)

    @admin.action(
        description="Decline the selected requests (asks for the reason sent to the members)", permissions=["change"]
    )
    def decline(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        """Two steps: the reason first (a form listing the waiting requests), then the decision."""
        form = DeclineForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._decide(request, queryset, confirm=False, note=form.cleaned_data["reason"])
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Decline deletion requests",
            "form": form,
            "waiting_requests": list(
                queryset.filter(status=DeletionRequest.Status.OPEN).select_related("member", "program").order_by("pk")
            ),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back_url": reverse("admin:loyalty_deletionrequest_changelist"),
        }
        return TemplateResponse(request, "admin/loyalty/deletionrequest/decline.html", context)


class DeclineForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=255,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Sent to the member in the email that tells them (e.g. an order still open, a dispute).",
    )
