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
from django.utils.safestring import mark_safe

from .. import branding, services, staff_scope
from ..forms import ProgramAdminForm
from ..models import Program
from .scope import ProgramScopedAdmin


@admin.register(Program)
class ProgramAdmin(ProgramScopedAdmin):
    program_path = "pk"
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
        (
            "Staff adjustments",
            {
                "fields": (
                    "adjustment_confirm_above",
                    "adjustment_approval_above",
                    "manager_adjustment_limit",
                    "support_adjustment_limit",
                ),
                "description": "Guardrails on adjusting a member's points by hand (docs/back-office.md). "
                "Owners have no limit.",
            },
        ),
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

    class Media:
        css = {"all": ["loyalty/brand_preview.css"]}
        js = ["loyalty/brand_preview.js"]

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

    @admin.display(description="Preview")
    def brand_preview(self, obj: Program | None) -> str:
        """The portal's header, menu, balance and a button in the program's colour and logo,
        with the colour's contrast and a warning when text on it is hard to read. Rendered with
        the saved values; loyalty/brand_preview.js follows the fields as they change."""
        program = obj if obj is not None else Program()
        color = program.brand_color or "#1F6FEB"
        colors = branding.brand_colors(color)
        name = program.name or "Your program"
        logo = program.logo_url if (program.logo_url or "").startswith("https://") else ""
        warning = branding.button_warning(color)
        note = branding.light_colour_note(color)
        on_button = branding.contrast(colors["color"], colors["on_color"])
        on_white = branding.contrast(colors["color"], branding.WHITE)
        return format_html(
            '<div class="brand-preview" data-brand-preview data-color="{color}" data-name="{name}" data-logo="{logo}">'
            '<div class="bp-page" style="--bp-brand:{color};--bp-on-brand:{on_color};--bp-link:{link};'
            '--bp-accent:{accent}" aria-label="Preview of the portal\'s header">'
            '<div class="bp-top"><div class="bp-row">'
            '<span><img class="bp-logo" src="{logo}" alt="{name}"{logo_hidden}>'
            '<span class="bp-name"{name_hidden}>{name}</span></span>'
            '<span class="bp-quiet">Log out</span></div>'
            '<div class="bp-nav"><span class="bp-current">My points</span><span>Rewards</span>'
            "<span>My coupons</span><span>My card</span></div></div>"
            '<div class="bp-card"><p class="bp-label">Available now</p>'
            '<p class="bp-big"><span class="bp-number">1,250</span> {points}</p>'
            '<span class="bp-button">Redeem a reward</span> <span class="bp-link">How to earn</span></div>'
            "</div>"
            '<p class="bp-warning" data-bp-warning role="status"{warning_hidden}>{warning}</p>'
            '<p class="bp-note" data-bp-note{note_hidden}>{note}</p>'
            '<p class="bp-note" data-bp-facts>Colour {color_upper}: button text {on_button}:1, '
            "on white {on_white}:1.</p>"
            '<p class="bp-note" data-bp-live hidden>The preview follows the colour, logo and name as you change '
            "them; save to apply.</p>"
            "</div>",
            color=colors["color"],
            color_upper=colors["color"].upper(),
            on_color=colors["on_color"],
            link=colors["link"],
            accent=colors["accent"],
            name=name,
            logo=logo,
            logo_hidden=mark_safe("" if logo else " hidden"),  # noqa: S308 (a constant)
            name_hidden=mark_safe(" hidden" if logo else ""),  # noqa: S308 (a constant)
            points=program.points_name or "points",
            warning=warning,
            warning_hidden=mark_safe("" if warning else " hidden"),  # noqa: S308 (a constant)
            note=note,
            note_hidden=mark_safe("" if note else " hidden"),  # noqa: S308 (a constant)
            on_button=f"{int(on_button * 100) / 100:.2f}",
            on_white=f"{int(on_white * 100) / 100:.2f}",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Program | None = None) -> tuple[str, ...]:
        # The slug names the program in API calls and commands: fixed once created.
        if obj:
            return ("slug", "created_at", "brand_preview", "widget_secret_masked", "widget_secret_state")
        return ("created_at", "brand_preview", "widget_secret_masked", "widget_secret_state")

    def get_prepopulated_fields(self, request: HttpRequest, obj: Program | None = None) -> dict[str, tuple[str]]:
        return {} if obj else {"slug": ("name",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A user limited to some programs would not see the program they add.
        return not staff_scope.is_limited(request.user) and super().has_add_permission(request)

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
