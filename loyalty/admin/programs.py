"""The programs' admin: a new program is created by `services.program_create` (its defaults
and coupon policy); a program is never deleted (deactivate it), and its slug is fixed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import URLPattern, path, reverse
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
    readonly_fields = ("created_at", "brand_preview", "widget_secret_masked")
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active", "created_at")}),
        ("Points", {"fields": ("points_name", "currency", "earn_rate", "min_redemption")}),
        ("Enrolment", {"fields": ("enrol_on_first_purchase",)}),
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
        (
            "Shop widget",
            {
                "fields": ("widget_secret_masked", "widget_origins"),
                "description": "The panel a shop shows its logged-in customers (balance, tier, rewards within "
                "reach, refer a friend). The shop's backend signs its customer id with the secret "
                '(docs/portal.md, "The shop widget"). Without a secret the widget is off.',
            },
        ),
    )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<path:object_id>/widget-secret/",
                self.admin_site.admin_view(self.widget_secret_view),
                name="loyalty_program_widget_secret",
            )
        ]
        return own + super().get_urls()

    def widget_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST from the buttons of the change page: a new widget secret, or the widget off."""
        program = self.get_object(request, object_id)
        if program is None or request.method != "POST" or not self.has_change_permission(request, program):
            raise PermissionDenied
        if request.POST.get("widget") == "off":
            services.program_widget_off(program=program)
            self.message_user(request, f"The widget of {program.name} is off: every token is refused.")
        else:
            services.program_widget_secret_rotate(program=program)
            self.message_user(
                request,
                f"{program.name} has a new widget secret: give it to the shop's backend (tokens signed with "
                "the old one are refused from now on).",
                messages.SUCCESS,
            )
        return redirect(reverse("admin:loyalty_program_change", args=[program.pk]))

    def get_fieldsets(self, request: HttpRequest, obj: Program | None = None) -> Any:
        """Staff who may only view the program see the secret's state, never the secret."""
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj):
            return fieldsets
        return [
            (
                name,
                {
                    **options,
                    "fields": tuple(
                        "widget_secret_state" if f == "widget_secret_masked" else f for f in options["fields"]
                    ),
                },
            )
            for name, options in fieldsets
        ]

    @admin.display(description="widget secret")
    def widget_secret_state(self, obj: Program | None) -> str:
        return "On (a secret is set)" if obj is not None and obj.widget_secret else "Off (no secret)"

    @admin.display(description="widget secret")
    def widget_secret_masked(self, obj: Program | None) -> str:
        """The secret masked (shown on demand to staff who may change the program), and the
        buttons that rotate it or turn the widget off (they post to `widget_secret_view`)."""
        if obj is None or not obj.pk:
            return "Save the program first."
        url = reverse("admin:loyalty_program_widget_secret", args=[obj.pk])
        rotate = format_html(
            '<button type="submit" class="button" formaction="{}" formmethod="post" formnovalidate '
            'name="widget" value="rotate">{}</button>',
            url,
            "Generate a new secret" if obj.widget_secret else "Turn the widget on (generate a secret)",
        )
        if not obj.widget_secret:
            return format_html("Off (no secret). {}", rotate)
        off = format_html(
            ' <button type="submit" class="button" formaction="{}" formmethod="post" formnovalidate '
            'name="widget" value="off">Turn the widget off</button>',
            url,
        )
        return format_html(
            '<code>{}</code><details style="margin:.4em 0"><summary>Show the secret</summary>'
            '<code style="user-select:all">{}</code></details>{}{}',
            "\u2022" * 8 + obj.widget_secret[-4:],
            obj.widget_secret,
            rotate,
            off,
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
        if obj:
            return ("slug", "created_at", "brand_preview", "widget_secret_masked", "widget_secret_state")
        return ("created_at", "brand_preview", "widget_secret_masked", "widget_secret_state")

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
