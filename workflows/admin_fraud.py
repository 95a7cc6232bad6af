"""The admin of fraud limits (registered by the last line of `workflows/admin.py`;
docs/fraud.md).

Staff set a program's velocity limits (one `FraudLimits` per program) and work the review
queue: the activities whose points are held. The queue is read-only; its actions release the
points (available now) or reject them (reversed, a reason asked in a second step), through
`workflows.fraud`, for staff with `workflows.decide_reviewhold` (Owner and Manager).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from loyalty import errors, staff_scope
from loyalty.admin import LargeTableAdmin, ProgramScopedAdmin, ReadOnlyAdmin, truncated_column

from . import fraud
from .models import FraudLimits, ReviewHold


@admin.register(FraudLimits)
class FraudLimitsAdmin(ProgramScopedAdmin):
    list_display = (
        "program",
        "is_active",
        "max_activities_per_day",
        "max_points_per_day",
        "max_refunds_per_month",
        "max_members_per_card",
        "max_same_amount_per_day",
    )
    list_filter = ("is_active",)
    list_select_related = ("program",)
    fields = (
        "program",
        "is_active",
        ("max_activities_per_day", "max_points_per_day"),
        "max_refunds_per_month",
        "max_members_per_card",
        "max_same_amount_per_day",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The program is the key of its limits: chosen once.
        return ("program",) if obj is not None else ()


class RejectForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=255,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Kept on the hold, in the audit trail and as the reason of the reversal entry.",
    )


@admin.register(ReviewHold)
class ReviewHoldAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    """The review queue: opens on the waiting holds, oldest first."""

    # The reason is the list filter; the detail says which limit and by how much.
    list_display = (
        "id",
        "status",
        "member_link",
        "why",
        "points",
        "activity_link",
        "held_at",
        "decision",
        "program",
    )
    list_filter = ("status", "reason", "program")
    list_select_related = ("member", "activity", "decided_by", "program")
    ordering = ("id",)
    search_fields = ("=member__id", "=member__external_id")
    search_help_text = "A member id or external id (exact)."
    actions = ("release", "reject")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not request.GET and request.method == "GET":
            return HttpResponseRedirect(f"{request.path}?status__exact=pending")
        return super().changelist_view(request, extra_context)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return fraud.can_decide(request.user)

    @admin.display(description="member")
    def member_link(self, obj: ReviewHold) -> str:
        url = reverse("admin:loyalty_member_change", args=[obj.member_id])
        return format_html('<a href="{}">{}</a>', url, obj.member)

    why = truncated_column("detail", "why held", length=44)

    @admin.display(description="held at", ordering="id")
    def held_at(self, obj: ReviewHold) -> str:
        return timezone.localtime(obj.created_at, obj.program.tz).strftime("%d %b %H:%M")

    @admin.display(description="decision")
    def decision(self, obj: ReviewHold) -> str:
        if obj.status == ReviewHold.Status.PENDING:
            return "—"
        who = obj.decided_by.get_username() if obj.decided_by_id else "?"
        text = f"{who}: {obj.note}" if obj.note else who
        if len(text) <= 30:
            return text
        return format_html('<span title="{}">{}…</span>', text, text[:29].rstrip())

    @admin.display(description="activity")
    def activity_link(self, obj: ReviewHold) -> str:
        activity = obj.activity
        amount = f" ({activity.amount} {activity.currency})" if activity.amount is not None else ""
        return f"{activity.order_id or activity.type}{amount}"

    def _decide(self, request: HttpRequest, queryset: QuerySet, *, release: bool, note: str = "") -> None:
        decided = points = 0
        program_ids = staff_scope.program_ids_for(request.user)
        for hold_id in queryset.filter(status=ReviewHold.Status.PENDING).order_by("pk").values_list("pk", flat=True):
            try:
                if release:
                    outcome = fraud.review_hold_release(
                        hold_id=hold_id, reviewer=request.user, note=note, program_ids=program_ids
                    )
                else:
                    outcome = fraud.review_hold_reject(
                        hold_id=hold_id, reviewer=request.user, note=note, program_ids=program_ids
                    )
            except errors.AlreadyDecided:
                continue  # another reviewer decided it meanwhile the other way
            if not outcome.already:
                decided += 1
                points += outcome.points
        verb = "Released" if release else "Rejected"
        what = "made available" if release else "reversed"
        plural = "s" if decided != 1 else ""
        self.message_user(request, f"{verb} {decided} hold{plural}: {points} points {what}.", messages.SUCCESS)

    @admin.action(description="Release the held points of the selected holds", permissions=["decide"])
    def release(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._decide(request, queryset, release=True)

    @admin.action(description="Reject the selected holds (asks for the reason)", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        """Two steps: the reason first (a form listing the waiting holds), then the decision."""
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._decide(request, queryset, release=False, note=form.cleaned_data["reason"])
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Reject held points",
            "form": form,
            "waiting_holds": list(
                queryset.filter(status=ReviewHold.Status.PENDING).select_related("member").order_by("pk")
            ),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back_url": reverse("admin:workflows_reviewhold_changelist"),
        }
        return TemplateResponse(request, "admin/workflows/reviewhold/reject.html", context)
