from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from loyalty.admin import ProgramScopedAdmin, ProgramTimeZoneAdmin, ReadOnlyAdmin, program_time_column, scope_form
from loyalty.staff_scope import programs_for

from . import builtins, selectors
from .customer_text import rule_customer_text
from .forms import ActivityPreviewForm, EarningRuleForm
from .models import EarningRule, RuleAward


@admin.register(EarningRule)
class EarningRuleAdmin(ProgramScopedAdmin, ProgramTimeZoneAdmin):
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
        ("Order", {"fields": ("priority", "stackable", "builtin")}),
    )
    readonly_fields = ("builtin", "members_read")
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
                "install-builtins/",
                self.admin_site.admin_view(self.install_builtins_view),
                name="workflows_earningrule_install_builtins",
            ),
            *super().get_urls(),
        ]

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
        }
        return TemplateResponse(request, "admin/workflows/earningrule/preview.html", context)


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
