"""Staff admin of rewards (docs/contributing.md): the catalog and the coupon policy are edited
here; coupons are read-only, and the writes (redeem for a member, cancel) call the services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from loyalty import staff_scope
from loyalty.admin import (
    MEMBER_PAGE_LINKS,
    LargeTableAdmin,
    ProgramScopedAdmin,
    ProgramTimeZoneAdmin,
    ReadOnlyAdmin,
    program_time_column,
)
from loyalty.errors import LoyaltyError
from loyalty.forms import IdempotentForm
from loyalty.models import Member

from . import codes, services
from .models import Redemption, Reward, RewardSettings


@admin.register(Reward)
class RewardAdmin(ProgramScopedAdmin, ProgramTimeZoneAdmin):
    list_display = (
        "name",
        "program",
        "kind",
        "cost_points",
        "value",
        "min_tier",
        "starts",
        "ends",
        "stock",
        "coupons_issued",
        "is_active",
    )
    list_filter = ("program", "is_active", "kind")
    list_editable = ("is_active",)
    list_select_related = ("program", "min_tier")
    search_fields = ("name", "sku")
    autocomplete_fields = ("program", "min_tier")
    readonly_fields = ("coupons_issued", "stock_taken")
    starts = program_time_column("starts_at", "starts")
    ends = program_time_column("ends_at", "ends")
    fieldsets = (
        (None, {"fields": ("program", "name", "description", "image", "position", "is_active")}),
        ("What it gives", {"fields": ("kind", "value", "sku")}),
        ("Cost", {"fields": ("cost_points", ("points_step", "points_min", "points_max"))}),
        (
            "Availability",
            {
                "fields": (
                    "min_tier",
                    ("starts_at", "ends_at"),
                    ("stock", "stock_taken"),
                    "coupons_issued",
                    "per_member_limit",
                )
            },
        ),
        ("Coupon", {"fields": ("valid_days",)}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Reward]:
        # `issued_count` only counts against a stock (it stays 0 for an unlimited reward), so
        # the column counts the coupons: one subquery per row of the page, on the partial index
        # `redemption_reward_issued`.
        issued = (
            Redemption.objects.filter(reward=OuterRef("pk"))
            .exclude(status=Redemption.Status.CANCELLED)
            .order_by()
            .values("reward")
            .annotate(n=Count("*"))
            .values("n")
        )
        return super().get_queryset(request).annotate(coupons=Coalesce(Subquery(issued), 0))

    @admin.display(description="Coupons issued", ordering="coupons")
    def coupons_issued(self, obj: Reward) -> int:
        """Coupons of this reward, redeemed or given, not cancelled (used and expired ones count)."""
        return getattr(obj, "coupons", 0)

    @admin.display(description="Stock taken")
    def stock_taken(self, obj: Reward) -> str:
        """Units of the stock in use (cancelled and expired coupons give theirs back)."""
        return "-" if obj.stock is None else str(obj.issued_count)


@admin.register(RewardSettings)
class RewardSettingsAdmin(ProgramScopedAdmin):
    list_display = ("program", "refund_expired_coupons")


CANCEL_AT_ONCE = 200  # each cancellation is a ledger posting: keep a request short


class RedeemForm(IdempotentForm):
    reward = forms.ModelChoiceField(queryset=Reward.objects.none())
    points = forms.IntegerField(
        required=False, min_value=1, help_text="Only for points as money off: how many points to spend."
    )

    def __init__(self, *args: Any, member: Member, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reward"].queryset = Reward.objects.filter(program_id=member.program_id, is_active=True)


@admin.register(Redemption)
class RedemptionAdmin(ProgramScopedAdmin, ReadOnlyAdmin, ProgramTimeZoneAdmin, LargeTableAdmin):
    list_display = ("code", "reward", "member", "status", "points", "value", "issued", "expires", "order_id")
    list_filter = ("status", "kind")
    list_select_related = ("reward", "member", "program")
    issued = program_time_column("issued_at", "issued at")
    expires = program_time_column("expires_at", "expires at")
    autocomplete_fields = ("member", "reward")
    search_fields = ("code", "order_id")
    actions = ["cancel_coupons"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Redemption], search_term: str) -> Any:
        """A code as typed, or an order id: exact look-ups on indexes (no scans)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        code = codes.normalize(term)
        if code:
            return queryset.filter(code=code), False
        if term.startswith("member:") and term[7:].isdigit():
            return queryset.filter(member_id=int(term[7:])), False
        return queryset.filter(order_id=term), False

    def get_urls(self) -> list[Any]:
        return [
            path(
                "redeem/<int:member_id>/",
                self.admin_site.admin_view(self.redeem_view),
                name="rewards_redemption_redeem",
            ),
            *super().get_urls(),
        ]

    @admin.action(description="Cancel the selected unused coupons (points come back)")
    def cancel_coupons(self, request: HttpRequest, queryset: QuerySet[Redemption]) -> None:
        if not request.user.has_perm("rewards.redeem_for_member"):
            raise PermissionDenied
        done, refused = 0, []
        selected = queryset.count()
        if selected > CANCEL_AT_ONCE:
            self.message_user(
                request, f"Select at most {CANCEL_AT_ONCE} coupons at a time ({selected} selected).", messages.ERROR
            )
            return
        for coupon in queryset.select_related("program"):
            try:
                services.redemption_cancel(program=coupon.program, code=coupon.code, reason="Cancelled by staff")
                done += 1
            except LoyaltyError as exc:
                refused.append(f"{coupon.code}: {exc}")
        if done:
            self.message_user(request, f"{done} coupon(s) cancelled; their points are back.", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.WARNING)

    def redeem_view(self, request: HttpRequest, member_id: int) -> HttpResponse:
        """Redeem a reward for a member (at the counter, on the phone): the same service as the
        API; a double submit issues one coupon."""
        if not request.user.has_perm("rewards.redeem_for_member"):
            raise PermissionDenied
        members = staff_scope.scope(Member.objects.select_related("program"), "program", request.user)
        member = get_object_or_404(members, pk=member_id)
        form = RedeemForm(request.POST or None, member=member)
        if request.method == "POST" and form.is_valid():
            try:
                result = services.reward_redeem(
                    program=member.program,
                    member=member,
                    reward=form.cleaned_data["reward"],
                    points=form.cleaned_data["points"],
                    idempotency_key=form.service_key("redeem"),
                )
            except LoyaltyError as exc:
                form.add_error(None, str(exc))
            else:
                coupon = result.redemption
                self.message_user(
                    request, f"Coupon {coupon.code} issued to {member} for {coupon.points} points.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:rewards_redemption_change", args=[coupon.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Redeem a reward",
            "member": member,
            "form": form,
            "rewards": form.fields["reward"].queryset.order_by("position", "id"),
        }
        return TemplateResponse(request, "admin/rewards/redemption/redeem.html", context)


# "Redeem a reward" on every member's admin page (loyalty's admin shows the links higher apps add).
MEMBER_PAGE_LINKS.append(("Redeem a reward", "admin:rewards_redemption_redeem", "rewards.redeem_for_member"))
