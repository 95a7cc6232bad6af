"""Staff admin of tiers (docs/contributing.md). Tiers are edited per program; members' tiers and
the history are read-only; the one write, "Set tier manually", calls `tier_set_manual`."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from loyalty import staff_scope
from loyalty.admin import LargeTableAdmin, ProgramScopedAdmin, ReadOnlyAdmin
from loyalty.errors import LoyaltyError
from loyalty.models import Member

from . import services
from .models import MemberTier, Tier, TierChange


class TierForm(forms.ModelForm):
    """Refuses a threshold out of order with the program's other tiers (`tier_order_error`)."""

    class Meta:
        model = Tier
        fields = ("program", "name", "position", "threshold", "multiplier", "benefits", "retention_days", "is_active")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        program, position, threshold = data.get("program"), data.get("position"), data.get("threshold")
        if data.get("is_active", True) and program is not None and position is not None and threshold is not None:
            problem = services.tier_order_error(
                program_id=program.pk, position=position, threshold=threshold, exclude_id=self.instance.pk
            )
            if problem is not None:
                self.add_error("threshold", problem)
        return data


@admin.register(Tier)
class TierAdmin(ProgramScopedAdmin):
    form = TierForm
    list_display = ("name", "program", "position", "threshold", "multiplier", "retention_days", "is_active")
    list_filter = ("program", "is_active")
    list_select_related = ("program",)
    ordering = ("program", "position")
    search_fields = ("name",)
    autocomplete_fields = ("program",)


class SetTierForm(forms.Form):
    tier = forms.ModelChoiceField(queryset=Tier.objects.none(), required=False, empty_label="No tier")
    until = forms.SplitDateTimeField(label="Until", widget=AdminSplitDateTime, help_text="When the manual tier ends.")
    reason = forms.CharField(max_length=255, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, member: Member, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tier"].queryset = Tier.objects.filter(program_id=member.program_id).order_by("position")
        self.fields["until"].help_text += f" Time zone: {member.program.timezone}."


@admin.register(MemberTier)
class MemberTierAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    program_path = "member__program"
    list_display = ("member", "tier", "since", "retain_until", "manual_until")
    list_select_related = ("member", "tier")
    autocomplete_fields = ("member", "tier")
    actions = ["set_tier_manually"]

    def get_urls(self) -> list[Any]:
        return [
            path(
                "set/<int:member_id>/",
                self.admin_site.admin_view(self.set_tier_view),
                name="tiers_membertier_set",
            ),
            *super().get_urls(),
        ]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.has_perm("tiers.set_tier_manually"):
            actions.pop("set_tier_manually", None)
        return actions

    @admin.action(description="Set tier manually")
    def set_tier_manually(self, request: HttpRequest, queryset: QuerySet[MemberTier]) -> HttpResponse | None:
        ids = list(queryset.values_list("member_id", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(request, "Select exactly one member.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:tiers_membertier_set", args=[ids[0]]))

    def set_tier_view(self, request: HttpRequest, member_id: int) -> HttpResponse:
        """The end date is typed and shown in the member's program time zone."""
        if not request.user.has_perm("tiers.set_tier_manually"):
            raise PermissionDenied
        members = staff_scope.scope(Member.objects.select_related("program"), "program", request.user)
        member = get_object_or_404(members, pk=member_id)
        with timezone.override(member.program.tz):
            response = self._set_tier_page(request, member)
            if isinstance(response, TemplateResponse):
                response.render()
        return response

    def _set_tier_page(self, request: HttpRequest, member: Member) -> HttpResponse:
        state = MemberTier.objects.select_related("tier").filter(member=member).first()
        form = SetTierForm(request.POST or None, member=member)
        if request.method == "POST" and form.is_valid():
            try:
                services.tier_set_manual(
                    member=member,
                    tier=form.cleaned_data["tier"],
                    until=form.cleaned_data["until"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                )
            except LoyaltyError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"Tier of {member} set manually.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:tiers_membertier_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Set tier manually",
            "member": member,
            "current": state.tier if state else None,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/tiers/membertier/set_tier.html", context)


@admin.register(TierChange)
class TierChangeAdmin(ProgramScopedAdmin, ReadOnlyAdmin, LargeTableAdmin):
    program_path = "member__program"
    list_display = ("id", "member", "kind", "from_tier", "to_tier", "metric_value", "at", "actor", "reason")
    list_filter = ("kind",)
    list_select_related = ("member", "from_tier", "to_tier", "actor")
    autocomplete_fields = ("member",)
