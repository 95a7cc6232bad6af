"""The admin of automations (registered by the last line of `workflows/admin.py`).

Staff edit an automation's trigger, conditions, actions and period; the form checks what the
model cannot (an activity trigger names its activity type, at least one action, tiers of the
automation's program, email templates that compile and use only the variables its actions
offer). "Install ready-made automations" calls
`automations.automations_install_ready_made`. Runs are read-only: the daily job and the event
receivers write them (`workflows.automations`).

Switching on never happens by a tick alone: saving the form with "Is active" newly ticked saves
everything else, keeps the automation off and opens the confirmation page (`activate_view`),
which shows the audience and cost now (`workflows.activation`) and switches it on only when the
box naming them is ticked and the figures still hold. The list's "Switch on" action leads to the
same page; an inactive automation's change page shows the same preview read-only.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from loyalty.admin import ProgramScopedAdmin, ReadOnlyAdmin, scope_form
from loyalty.models import Program
from rewards.models import Reward
from tiers.models import Tier

from . import activation, automations
from .admin_budgets import BUDGET_FIELDS, BudgetUseAdminMixin
from .forms import budget_period_or_month
from .models import Automation, AutomationRun

RECENT_RUNS = 10


class TierChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Tier) -> str:
        return f"{obj.name} ({obj.program})"


class AutomationForm(forms.ModelForm):
    """Tiers as check boxes, limited to the automation's program once it has one."""

    tiers = TierChoiceField(
        queryset=Tier.objects.select_related("program").order_by("program__name", "position"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The member is in one of these tiers (none ticked: any tier or none).",
    )

    class Meta:
        model = Automation
        fields = (
            "program",
            "name",
            "is_active",
            "trigger",
            "activity_type",
            "period",
            "window_days",
            "min_orders",
            "min_amount_spent",
            "min_points_earned",
            "min_days_inactive",
            "tiers",
            "min_days_enrolled",
            "on_enrollment_anniversary",
            "award_points",
            "set_tier",
            "set_tier_days",
            "email_subject",
            "email_body",
            "email_transactional",
            "reward_id",
            "budget_total",
            "budget_per_period",
            "budget_period",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        program_id = self.instance.program_id if self.instance.pk else None
        if program_id is not None:
            self.fields["tiers"].queryset = self.fields["tiers"].queryset.filter(program_id=program_id)
            if "set_tier" in self.fields:
                self.fields["set_tier"].queryset = Tier.objects.filter(program_id=program_id).order_by("position")

    def clean_budget_period(self) -> str:
        return budget_period_or_month(self)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        program = data.get("program") or (self.instance.program if self.instance.program_id else None)
        trigger = data.get("trigger")
        if trigger == Automation.Trigger.ACTIVITY and not data.get("activity_type"):
            self.add_error("activity_type", "Name the activity type this automation reacts to (e.g. purchase).")
        if trigger and trigger != Automation.Trigger.ACTIVITY and data.get("activity_type"):
            self.add_error("activity_type", "Only the activity trigger uses an activity type.")
        subject, body = (data.get("email_subject") or "").strip(), (data.get("email_body") or "").strip()
        if bool(subject) != bool(body):
            self.add_error("email_body" if subject else "email_subject", "An email needs both a subject and a body.")
        variables = automations.email_variables(
            award_points=bool(data.get("award_points")),
            set_tier=data.get("set_tier") is not None,
            reward=bool(data.get("reward_id")),
        )
        for name in ("email_subject", "email_body"):
            for problem in automations.email_template_problems(data.get(name) or "", variables):
                self.add_error(name, problem)
        if not (data.get("award_points") or data.get("set_tier") or (subject and body) or data.get("reward_id")):
            raise forms.ValidationError(
                "Choose at least one action: award points, set a tier, send an email or issue a reward."
            )
        set_tier = data.get("set_tier")
        if program is not None and set_tier is not None and set_tier.program_id != program.pk:
            self.add_error("set_tier", "Choose a tier of this automation's program.")
        if data.get("set_tier_days") and set_tier is None:
            self.add_error("set_tier_days", "Days apply to the tier set by this automation: choose the tier.")
        tiers = data.get("tiers")
        if program is not None and tiers and any(t.program_id != program.pk for t in tiers):
            self.add_error("tiers", "Choose tiers of this automation's program.")
        reward_id = data.get("reward_id")
        if program is not None and reward_id and not Reward.objects.filter(pk=reward_id, program=program).exists():
            self.add_error("reward_id", "No reward of this automation's program has this id (Rewards → Rewards).")
        return data


class InstallReadyMadeForm(forms.Form):
    program = forms.ModelChoiceField(queryset=Program.objects.order_by("name"))


class ActivateForm(forms.Form):
    confirm = forms.BooleanField(
        required=True, error_messages={"required": "Tick the box to confirm the audience and cost shown above."}
    )


ACTIVE_HELP = (
    "Ticking it and saving keeps the automation off until you confirm, on the next page, the members it would "
    "act on now and what it would give them."
)


@admin.register(Automation)
class AutomationAdmin(BudgetUseAdminMixin, ProgramScopedAdmin):
    form = AutomationForm
    list_display = (
        "name",
        "program",
        "trigger",
        "activity_type",
        "period",
        "is_active",
        "switch",
        "ready_made",
        "budget_use",
    )
    list_filter = ("program", "is_active", "trigger", "period")
    # No list_editable "is_active": switching on goes through the confirmation page.
    actions = ("switch_on", "switch_off")
    list_select_related = ("program",)
    search_fields = ("name",)
    autocomplete_fields = ("program", "set_tier")
    fieldsets = (
        (None, {"fields": ("program", "name", "is_active", "ready_made")}),
        ("Trigger", {"fields": ("trigger", "activity_type")}),
        (
            "Conditions (all that are set must hold)",
            {
                "fields": (
                    "window_days",
                    ("min_orders", "min_amount_spent", "min_points_earned"),
                    "min_days_inactive",
                    "tiers",
                    "min_days_enrolled",
                    "on_enrollment_anniversary",
                )
            },
        ),
        (
            "Actions",
            {
                "fields": (
                    "award_points",
                    ("set_tier", "set_tier_days"),
                    "email_subject",
                    "email_body",
                    "email_transactional",
                    "reward_id",
                )
            },
        ),
        ("Period", {"fields": ("period",)}),
        (
            "Budget of its points (all members together)",
            {
                "fields": (*BUDGET_FIELDS, "budget_use"),
                "description": "The points it awards stop when a limit is used up (docs/budgets.md).",
            },
        ),
        ("Recent runs", {"fields": ("recent_runs",)}),
    )
    readonly_fields = ("ready_made", "recent_runs", "activation_preview", "budget_use")
    change_list_template = "admin/workflows/automation/change_list.html"

    def get_fieldsets(self, request: HttpRequest, obj: Automation | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not obj.is_active:
            preview = ("Before switching on: audience and cost now", {"fields": ("activation_preview",)})
            return (fieldsets[0], preview, *fieldsets[1:])
        return fieldsets

    def get_form(self, request: HttpRequest, obj: Automation | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if "is_active" in form.base_fields and not (obj is not None and obj.is_active):
            form.base_fields["is_active"].help_text = ACTIVE_HELP
        return form

    @admin.display(description="Audience and cost")
    def activation_preview(self, obj: Automation) -> str:
        """The read-only preview of an inactive automation (as saved), with the way to switch on."""
        if obj.pk is None or obj.is_active:
            return "-"
        preview = activation.activation_preview(automation=obj)
        panel = render_to_string("admin/workflows/automation/_activation_preview.html", {"preview": preview})
        link = reverse("admin:workflows_automation_activate", args=[obj.pk])
        return format_html("{}<p><a class='button' href='{}'>Switch on…</a></p>", mark_safe(panel), link)  # noqa: S308

    @admin.display(description="Switch")
    def switch(self, obj: Automation) -> str:
        if obj.is_active:
            return "-"
        return format_html("<a href='{}'>Switch on…</a>", reverse("admin:workflows_automation_activate", args=[obj.pk]))

    @admin.action(description="Switch on selected automations (shows their audience and cost first)")
    def switch_on(self, request: HttpRequest, queryset: Any) -> HttpResponse:
        ids = ",".join(str(pk) for pk in queryset.filter(is_active=False).values_list("pk", flat=True))
        if not ids:
            self.message_user(request, "The selected automations are on already.", messages.INFO)
            return HttpResponseRedirect(request.get_full_path())
        return HttpResponseRedirect(reverse("admin:workflows_automation_activate_many") + f"?ids={ids}")

    @admin.action(description="Switch off selected automations")
    def switch_off(self, request: HttpRequest, queryset: Any) -> None:
        stopped = [
            a.name
            for a in queryset.filter(is_active=True)
            if activation.automation_deactivate(automation_id=a.pk, actor=request.user)
        ]
        self.message_user(request, f"Switched off: {', '.join(stopped)}." if stopped else "Nothing was on.")

    def save_model(self, request: HttpRequest, obj: Automation, form: Any, change: bool) -> None:
        # A newly ticked "Is active" is not saved: the confirmation page switches it on.
        was_active = change and Automation.objects.filter(pk=obj.pk, is_active=True).exists()
        if obj.is_active and not was_active:
            obj.is_active = False
            request._automation_needs_activation = True  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def _to_activation(self, request: HttpRequest, obj: Automation) -> HttpResponse | None:
        if not getattr(request, "_automation_needs_activation", False):
            return None
        self.message_user(
            request,
            f"“{obj.name}” is saved and still off: confirm its audience and cost to switch it on.",
            messages.INFO,
        )
        return HttpResponseRedirect(reverse("admin:workflows_automation_activate", args=[obj.pk]))

    def response_add(self, request: HttpRequest, obj: Automation, post_url_continue: str | None = None) -> HttpResponse:
        return self._to_activation(request, obj) or super().response_add(request, obj, post_url_continue)

    def response_change(self, request: HttpRequest, obj: Automation) -> HttpResponse:
        return self._to_activation(request, obj) or super().response_change(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Automation | None = None) -> tuple[str, ...]:
        # The program is fixed once runs may exist: its tiers and members are what they refer to.
        return (*self.readonly_fields, "program") if obj is not None else self.readonly_fields

    @admin.display(description="Recent runs")
    def recent_runs(self, obj: Automation) -> str:
        """The last runs of this automation (newest ids first, no count) and a link to all."""
        if obj.pk is None:
            return "-"
        runs = list(AutomationRun.objects.filter(automation=obj).select_related("member").order_by("-id")[:RECENT_RUNS])
        link = reverse("admin:workflows_automationrun_changelist") + f"?automation__id__exact={obj.pk}"
        rows = format_html_join(
            "",
            "<li>{} — {} ({}, {} points)</li>",
            ((f"{r.fired_at:%Y-%m-%d %H:%M}", r.member, r.period_key, r.points) for r in runs),
        )
        return format_html("<ul>{}</ul><a href='{}'>All runs of this automation</a>", rows or "No runs yet.", link)

    def get_urls(self) -> list:
        return [
            path(
                "install-ready-made/",
                self.admin_site.admin_view(self.install_ready_made_view),
                name="workflows_automation_install_ready_made",
            ),
            path(
                "activate/", self.admin_site.admin_view(self.activate_view), name="workflows_automation_activate_many"
            ),
            path(
                "<path:object_id>/activate/",
                self.admin_site.admin_view(self.activate_view),
                name="workflows_automation_activate",
            ),
            *super().get_urls(),
        ]

    def install_ready_made_view(self, request: HttpRequest) -> HttpResponse:
        """Install the ready-made automations (inactive) of the chosen program."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = scope_form(InstallReadyMadeForm(request.POST or None), request.user)
        if request.method == "POST" and form.is_valid():
            program = form.cleaned_data["program"]
            installed = automations.automations_install_ready_made(program=program)
            created = [a.name for a, was_created in installed if was_created]
            if created:
                messages.success(
                    request, f"Installed for {program}: {', '.join(created)} (inactive: review and switch on)."
                )
            else:
                messages.info(request, f"{program} already has the ready-made automations.")
            return HttpResponseRedirect(
                reverse("admin:workflows_automation_changelist") + f"?program__id__exact={program.pk}"
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Install ready-made automations",
            "form": form,
        }
        return TemplateResponse(request, "admin/workflows/automation/install_ready_made.html", context)

    def activate_view(self, request: HttpRequest, object_id: str | None = None) -> HttpResponse:
        """The confirmation page: each automation's audience and cost now, one box naming them.
        Only automations the user may change (their programs: `get_object` is scoped) are shown.
        A POST switches on those whose figures still hold (within `activation.TOLERANCE` of the
        ones shown, carried in hidden fields); the others are shown again with their new figures."""
        if object_id is not None:
            ids = [object_id]
        else:
            raw = request.POST.getlist("ids") if request.method == "POST" else request.GET.get("ids", "").split(",")
            ids = [i for i in raw if i.strip().isdigit()]
        found = [self.get_object(request, i) for i in dict.fromkeys(ids)]
        chosen = [a for a in found if a is not None]
        if not chosen:
            raise Http404("No such automation.")
        if not all(self.has_change_permission(request, a) for a in chosen):
            raise PermissionDenied
        form = ActivateForm(request.POST or None)
        changed: list[str] = []
        if request.method == "POST" and form.is_valid():
            done, again = [], []
            for automation in chosen:
                seen = _parse_seen(request.POST.get(f"seen_{automation.pk}", ""))
                try:
                    result = activation.automation_activate(
                        automation_id=automation.pk, actor=request.user, confirm=True, seen=seen
                    )
                except activation.AudienceChanged as exc:
                    changed.extend(exc.details["changed"])
                    again.append(automation)
                    continue
                if result.activated:
                    done.append(f"“{automation.name}” ({result.preview.sentence()})")
            if done:
                self.message_user(request, "Switched on: " + "; ".join(done), messages.SUCCESS)
            if not again:
                return HttpResponseRedirect(reverse("admin:workflows_automation_changelist"))
            chosen, form = again, ActivateForm()
        items = []
        for automation in chosen:
            if automation.is_active:
                continue
            preview = activation.activation_preview(automation=automation)
            items.append({"automation": automation, "preview": preview, "seen": json.dumps(preview.figures())})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Switch on: " + ", ".join(a.name for a in chosen),
            "items": items,
            "form": form,
            "changed": sorted(set(changed)),
        }
        return TemplateResponse(request, "admin/workflows/automation/activate.html", context)


def _parse_seen(raw: str) -> dict[str, int] | None:
    """The figures the page showed (a hidden field); None when missing or unreadable (then the
    confirmation is taken without a tolerance check, as from a page that showed nothing — never
    happens from our page)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {k: int(v) for k, v in data.items() if k in activation.FIGURES and isinstance(v, int)}


@admin.register(AutomationRun)
class AutomationRunAdmin(ProgramScopedAdmin, ReadOnlyAdmin):
    program_path = "automation__program"
    """What each automation did for whom: read-only (written by `workflows.automations`)."""

    list_display = ("automation", "member_id", "member", "period_key", "points", "fired_at")
    list_select_related = ("automation", "member")
    list_filter = ("automation",)
    search_fields = ("=member__id",)
    search_help_text = "Member id"
    autocomplete_fields = ("automation", "member")
    show_full_result_count = False
    # Newest first by primary key: a backward scan of the pk index stops after a page, where
    # ordering by fired_at would sort every run of the automation.
    ordering = ("-id",)
