from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from loyalty.admin import ProgramScopedAdmin, ProgramTimeZoneAdmin, ReadOnlyAdmin, program_time_column, scope_form
from loyalty.models import Activity
from loyalty.staff_scope import programs_for

from . import builtins, rules, selectors
from .admin_budgets import BUDGET_FIELDS, BudgetUseAdminMixin
from .customer_text import rule_customer_text
from .forms import ActivityPreviewForm, EarningRuleForm
from .models import EarningRule, RuleAward


@admin.register(EarningRule)
class EarningRuleAdmin(BudgetUseAdminMixin, ProgramScopedAdmin, ProgramTimeZoneAdmin):
    form = EarningRuleForm
    list_display = (
        "name",
        "program",
        "trigger",
        "kind",
        "points",
        "multiplier",
        "starts",
        "ends",
        "priority",
        "is_active",
        "budget_use",
    )
    starts = program_time_column("starts_at", "starts")
    ends = program_time_column("ends_at", "ends")
    list_filter = ("program", "is_active", "trigger", "kind")
    list_editable = ("is_active",)
    list_select_related = ("program",)
    search_fields = ("name", "trigger")
    autocomplete_fields = ("program",)
    fieldsets = (
        (None, {"fields": ("program", "name", "trigger", "is_active")}),
        ("Points", {"fields": ("kind", "points", "multiplier")}),
        (
            "What members read",
            {
                "fields": ("customer_text", "members_read"),
                "description": 'The portal\'s "How to earn" page shows this rule with your text, or with a '
                "sentence written from the rule when you leave it empty.",
            },
        ),
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
        (
            "Budget (points, all members together)",
            {
                "fields": (*BUDGET_FIELDS, "budget_use"),
                "description": "Awards stop when a limit is used up; the program's admin address gets an email "
                "at 80 % and 100 % (docs/budgets.md).",
            },
        ),
        ("Order", {"fields": ("priority", "stackable", "builtin")}),
    )
    readonly_fields = ("builtin", "members_read", "budget_use")
    change_list_template = "admin/workflows/earningrule/change_list.html"

    @admin.display(description="Members read")
    def members_read(self, obj: EarningRule | None) -> str:
        """The sentence the portal shows for the saved rule (the staff's text, else the written one)."""
        if obj is None or not obj.pk:
            return "-"
        return rule_customer_text(obj, obj.program)

    def get_urls(self) -> list:
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="workflows_earningrule_preview",
            ),
            path(
                "explain/<int:activity_id>/",
                self.admin_site.admin_view(self.explain_view),
                name="workflows_earningrule_explain",
            ),
            path(
                "install-builtins/",
                self.admin_site.admin_view(self.install_builtins_view),
                name="workflows_earningrule_install_builtins",
            ),
            *super().get_urls(),
        ]

    def explain_view(self, request: HttpRequest, activity_id: int) -> HttpResponse:
        """ "Why this activity earned this": every active rule's step for a stored activity, as
        things stood when it was reported (caps used before it, the member's tier then)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        # A refund earns nothing by the rules (it takes back its order's points).
        activities = Activity.objects.select_related("program", "member").exclude(type=Activity.Type.REFUND)
        activity = get_object_or_404(activities.filter(program__in=programs_for(request.user)), pk=activity_id)
        explained = selectors.stored_activity_explain(activity=activity)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Why activity {activity.pk} earned {explained.live_points} points",
            "activity": activity,
            "explained": explained,
            "rows": explanation_rows(explained),
            "activity_url": reverse("admin:loyalty_activity_change", args=[activity.pk]),
        }
        return TemplateResponse(request, "admin/workflows/earningrule/explain.html", context)

    def install_builtins_view(self, request: HttpRequest) -> HttpResponse:
        """POST: add the built-in rules (signup, purchase, birthday, social share, store visit)
        that a program lacks, switched off, to every program (`builtins.builtin_rules_install`)."""
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        created = 0
        for program in programs_for(request.user).order_by("id"):
            created += sum(1 for _, new in builtins.builtin_rules_install(program=program) if new)
        self.message_user(
            request,
            f"{created} built-in rule(s) added, switched off: tick 'active' on those you want."
            if created
            else "Every program already has the built-in rules.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:workflows_earningrule_changelist"))

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """ "What would this order earn this member?": the rules' answer, posting nothing."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = scope_form(ActivityPreviewForm(request.GET or None), request.user)
        preview = explained = None
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            activity = {
                "program": data["program"],
                "member": data["member_obj"],
                "type": data["type"],
                "occurred_at": data["occurred_at"],
                "amount": data["amount"],
                "channel": data["channel"],
                "items": data["items"],
            }
            preview = selectors.activity_preview(**activity)
            explained = selectors.activity_explain(**activity)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Preview an order",
            "form": form,
            "preview": preview,
            "explained": explained,
            "rows": explanation_rows(explained) if explained else [],
        }
        return TemplateResponse(request, "admin/workflows/earningrule/preview.html", context)


def explanation_rows(explained: selectors.Explained) -> list[dict[str, Any]]:
    """The explanation as table rows: each rule's result, its arithmetic and the stacking note."""
    rows = []
    explanation = explained.explanation
    for step in explanation.steps:
        rows.append(
            {
                "step": step,
                "result": {
                    rules.Outcome.FIRED: "fired",
                    rules.Outcome.NOT_MET: "did not fire",
                    rules.Outcome.ZERO: "did not fire",
                    rules.Outcome.STOPPED: "stopped",
                }[step.outcome],
                "computed": step.outcome in (rules.Outcome.FIRED, rules.Outcome.ZERO),
                # Said for a multiplying rule: what its "xN" adds on top of the others.
                "stacking": explanation.stacking(step) if step.multiplier != 1 else "",
            }
        )
    return rows


@admin.register(RuleAward)
class RuleAwardAdmin(ProgramScopedAdmin, ReadOnlyAdmin):
    """What each rule gave: read-only (written by `services.activity_report`)."""

    list_display = ("rule", "member", "activity", "points", "occurred_at")
    list_select_related = ("rule", "member", "activity")
    autocomplete_fields = ("rule", "member", "activity")
    list_filter = ("rule__program",)
    program_path = "rule__program"
    show_full_result_count = False


from . import admin_automations  # noqa: E402,F401  (registers the automations admin)

from . import admin_referrals  # noqa: E402,F401  (registers the referral admin)  # isort: skip

from . import admin_fraud  # noqa: E402,F401  (registers the fraud limits and the review queue)  # isort: skip
