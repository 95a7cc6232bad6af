"""The admin of referrals (registered by the last line of `workflows/admin.py`).

Staff set a program's referral offer (one `ReferralSettings` per program) and review the
referrals: read-only, since `workflows.referrals` writes them (fraud guards at enrolment, the
reward on the friend's first qualifying purchase). Rejected referrals stay listed with their
reason so staff can see attempted self-referrals.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from loyalty.admin import ProgramScopedAdmin, ReadOnlyAdmin, truncated_column

from .models import Referral, ReferralSettings


@admin.register(ReferralSettings)
class ReferralSettingsAdmin(ProgramScopedAdmin):
    list_display = (
        "program",
        "is_active",
        "referrer_points",
        "friend_points",
        "min_order_amount",
        "monthly_cap",
        "qualify_within_days",
    )
    list_filter = ("is_active",)
    list_select_related = ("program",)
    fields = (
        "program",
        "is_active",
        ("referrer_points", "friend_points"),
        "min_order_amount",
        "monthly_cap",
        "qualify_within_days",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The program is the key of its settings: chosen once.
        return ("program",) if obj is not None else ()


@admin.register(Referral)
class ReferralAdmin(ProgramScopedAdmin, ReadOnlyAdmin):
    """Read-only: what the fraud guards decided and what each referral paid."""

    list_display = (
        "id",
        "referrer",
        "friend",
        "status",
        "short_reason",
        "created_at",
        "referrer_points",
        "friend_points",
    )
    short_reason = truncated_column("reason", "reason", 30)
    list_filter = ("status", "program")
    list_select_related = ("referrer", "friend")
    autocomplete_fields = ("referrer", "friend")
    search_fields = (
        "=referrer__id",
        "=friend__id",
        "=referrer__external_id",
        "=friend__external_id",
        "referrer__email",
        "friend__email",
        "=order_id",
    )
    ordering = ("-created_at",)
    show_full_result_count = False
