from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from . import selectors
from .forms import ActivityPreviewForm, EarningRuleForm
from .models import EarningRule, RuleAward


@admin.register(EarningRule)
class EarningRuleAdmin(admin.ModelAdmin):
    form = EarningRuleForm
    list_display = ("name", "program", "trigger", "kind", "points", "multiplier", "priority", "stackable", "is_active")
    list_filter = ("program", "is_active", "trigger", "kind")
    list_editable = ("is_active",)
    list_select_related = ("program",)
    search_fields = ("name", "trigger")
    fieldsets = (
        (None, {"fields": ("program", "name", "trigger", "is_active")}),
        ("Points", {"fields": ("kind", "points", "multiplier")}),
        (
            "Conditions",
            {
                "fields": (
                    "min_amount",
                    "channel",
                    "tiers",
                    ("include_categories", "exclude_categories"),
                    ("include_skus", "exclude_skus"),
                    ("starts_at", "ends_at"),
                    "days_of_week",
                )
            },
        ),
        (
            "Caps (points per member)",
            {"fields": (("cap_per_order", "cap_per_day"), ("cap_per_week", "cap_per_month"), "cap_lifetime")},
        ),
        ("Order", {"fields": ("priority", "stackable", "builtin")}),
    )
    readonly_fields = ("builtin",)
    change_list_template = "admin/workflows/earningrule/change_list.html"

    def get_urls(self) -> list:
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="workflows_earningrule_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """ "What would this order earn this member?": the rules' answer, posting nothing."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ActivityPreviewForm(request.GET or None)
        preview = None
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            preview = selectors.activity_preview(
                program=data["program"],
                member=data["member_obj"],
                type=data["type"],
                occurred_at=data["occurred_at"],
                amount=data["amount"],
                channel=data["channel"],
                items=data["items"],
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Preview an order",
            "form": form,
            "preview": preview,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/workflows/earningrule/preview.html", context)


@admin.register(RuleAward)
class RuleAwardAdmin(admin.ModelAdmin):
    """What each rule gave: read-only (written by `services.activity_report`)."""

    list_display = ("rule", "member", "activity", "points", "occurred_at")
    list_select_related = ("rule", "member", "activity")
    raw_id_fields = ("rule", "member", "activity")
    list_filter = ("rule__program",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
