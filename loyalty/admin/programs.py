"""The programs' admin: a new program is created by `services.program_create` (its defaults
and coupon policy); a program is never deleted (deactivate it), and its slug is fixed."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from .. import services
from ..forms import ProgramAdminForm
from ..models import Program


@admin.register(Program)
class ProgramAdmin(admin.ModelAdmin):
    form = ProgramAdminForm
    list_display = (
        "name",
        "slug",
        "currency",
        "earn_rate",
        "min_redemption",
        "expiry_days",
        "pending_days",
        "timezone",
        "is_active",
    )
    list_filter = ("is_active",)
    search_fields = ("name", "slug")
    readonly_fields = ("created_at", "brand_preview")
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active", "created_at")}),
        ("Points", {"fields": ("points_name", "currency", "earn_rate", "min_redemption")}),
        ("Enrolment", {"fields": ("enrol_on_first_purchase",)}),
        (
            "Finance",
            {
                "fields": ("point_value", "point_standalone_price", "expected_redemption_rate"),
                "description": "In the program's currency. The liability, breakage and deferred-revenue "
                "reports (Dashboard, Reports) read them; docs/liability.md explains how.",
            },
        ),
        (
            "Pending and expiry",
            {
                "fields": ("pending_days", "expiry_days"),
                "description": "Changes apply to points earned from now on; existing lots keep their dates.",
            },
        ),
        ("Tiers", {"fields": ("tier_metric", "tier_window_days")}),
        ("Locale", {"fields": ("timezone",)}),
        (
            "Branding",
            {
                "fields": ("brand_color", "logo_url", "brand_preview", "language"),
                "description": "What members see in emails and on the portal.",
            },
        ),
        (
            "Terms",
            {
                "fields": ("terms",),
                "description": "The portal shows them on its terms page, linked from every page's footer; "
                "wallet cards show them on their back.",
            },
        ),
    )

    @admin.display(description="as saved")
    def brand_preview(self, obj: Program | None) -> str:
        """A swatch of the saved colour, and the logo (the emails' header; docs/emails.md)."""
        if obj is None or not obj.pk:
            return "-"
        logo = (
            format_html(' <img src="{}" alt="logo" style="max-height:40px;vertical-align:middle">', obj.logo_url)
            if obj.logo_url
            else ""
        )
        return format_html(
            '<span style="display:inline-block;width:48px;height:24px;border-radius:4px;vertical-align:middle;'
            'border:1px solid #0003;background:{}"></span> {}{}',
            obj.brand_color,
            obj.brand_color,
            logo,
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Program | None = None) -> tuple[str, ...]:
        # The slug names the program in API calls and commands: fixed once created.
        return ("slug", "created_at", "brand_preview") if obj else ("created_at", "brand_preview")

    def get_prepopulated_fields(self, request: HttpRequest, obj: Program | None = None) -> dict[str, tuple[str]]:
        return {} if obj else {"slug": ("name",)}

    def has_delete_permission(self, request: HttpRequest, obj: Program | None = None) -> bool:
        # A program's members and ledger are protected; deactivate it instead.
        return False

    def save_model(self, request: HttpRequest, obj: Program, form: ProgramAdminForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        fields = {name: value for name, value in form.cleaned_data.items() if name not in ("name", "slug")}
        created = services.program_create(name=obj.name, slug=obj.slug, **fields)
        obj.pk, obj.created_at = created.pk, created.created_at
        obj._state.adding = False
