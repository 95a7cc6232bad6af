"""The staff back-office's admin site (docs/back-office.md, "Finding your way").

- It carries the installation's name (`LOYALTY_SITE_NAME`) in the header, the page titles and
  the login page, instead of "Django administration".
- The first page after login is the dashboard (`dashboard:home`): the admin's index redirects
  there; every section is listed at /admin/sections/ and in the sidebar.
- Its navigation is grouped by what a manager does (`GROUPS`), not by Django app. The plumbing
  (idempotency records, job runs, the beat's raw schedule tables, login attempts) sits in a
  "Technical" group that only superusers and the Owner group see. A model that no group names
  falls in "Settings" (or "Technical" for the dashboard's own tables).

It replaces Django's default site through `LoyaltyAdminConfig` (INSTALLED_APPS), so the
`admin.site.register(...)` and `@admin.register` calls of every app register on it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse

DEFAULT_SITE_NAME = "Loyalty back-office"
OWNER_GROUP = "Owner"
TECHNICAL = "Technical"
SETTINGS = "Settings"

# Group name, its anchor, and the models it lists in this order: (app_label, model_name, label or
# None for the model's own plural name).
GROUPS: list[tuple[str, str, list[tuple[str, str, str | None]]]] = [
    (
        "Members",
        "members",
        [
            ("loyalty", "member", None),
            ("loyalty", "ledgerentry", "Points history (ledger)"),
            ("loyalty", "activity", "Purchases and activities"),
            ("tiers", "membertier", None),
            ("tiers", "tierchange", None),
            ("workflows", "referral", None),
            ("loyalty", "deletionrequest", "Data deletion requests"),
            ("cards", "memberimport", None),
            ("loyalty", "staffaction", None),
            ("loyalty", "adjustmentrequest", None),
            ("loyalty", "membernote", None),
            ("workflows", "reviewhold", "Review queue (held points)"),
        ],
    ),
    ("Cards", "cards", [("cards", "card", None), ("cards", "cardbatch", None)]),
    (
        "Rewards",
        "rewards",
        [("rewards", "reward", None), ("rewards", "redemption", "Coupons"), ("rewards", "rewardsettings", None)],
    ),
    (
        "Rules and automations",
        "rules",
        [
            ("workflows", "earningrule", None),
            ("workflows", "ruleaward", None),
            ("workflows", "automation", None),
            ("workflows", "automationrun", None),
            ("tiers", "tier", None),
            ("workflows", "referralsettings", None),
            ("workflows", "programbudget", None),
            ("workflows", "budgetcut", "Awards cut by a budget"),
            ("programfiles", "programdraft", "Configuration drafts"),
            ("programfiles", "programversion", "Published versions"),
            ("workflows", "fraudlimits", None),
        ],
    ),
    (
        "Emails",
        "emails",
        [
            ("notifications", "emailmessage", "Sent and queued emails"),
            ("notifications", "emailtemplate", None),
            ("notifications", "emailsettings", None),
            ("notifications", "emailsuppression", None),
        ],
    ),
    # Reports: pages of the dashboard app, not models (see `_report_links`).
    ("Reports", "reports", []),
    (
        SETTINGS,
        "settings",
        [
            ("loyalty", "program", None),
            ("loyalty", "programapikey", None),
            ("notifications", "webhookendpoint", None),
            ("django_celery_beat", "periodictask", "Scheduled jobs"),
            ("auth", "user", "Staff accounts"),
            ("auth", "group", "Roles (groups)"),
        ],
    ),
    (
        TECHNICAL,
        "technical",
        [
            ("loyalty", "idempotencyrecord", None),
            ("loyalty", "ledgerjobrun", None),
            ("notifications", "webhookdelivery", None),
            ("django_celery_beat", "crontabschedule", None),
            ("django_celery_beat", "intervalschedule", None),
            ("django_celery_beat", "clockedschedule", None),
            ("django_celery_beat", "solarschedule", None),
            ("axes", "accessattempt", None),
            ("axes", "accessfailurelog", None),
            ("axes", "accesslog", None),
        ],
    ),
]

# Apps whose unnamed models are plumbing rather than settings.
TECHNICAL_APPS = ("dashboard", "axes", "django_celery_beat")


def site_name() -> str:
    return getattr(settings, "LOYALTY_SITE_NAME", "") or DEFAULT_SITE_NAME


def sees_technical(user: Any) -> bool:
    """Superusers and members of the Owner group see the Technical group."""
    if not (user.is_active and user.is_staff):
        return False
    return bool(user.is_superuser or user.groups.filter(name__iexact=OWNER_GROUP).exists())


def _report_links() -> list[dict[str, Any]]:
    try:
        home = reverse("dashboard:home")
    except NoReverseMatch:  # pragma: no cover - the dashboard app is installed
        return []
    links = [("Dashboard", "dashboard", home), ("Reports", "reports", f"{home}reports/")]
    return [
        {
            "name": label,
            "object_name": object_name,
            "admin_url": url,
            "add_url": None,
            "view_only": True,
            "perms": {"view": True},
        }
        for label, object_name, url in links
    ]


class LabelledAutocompleteJsonView(AutocompleteJsonView):
    """Django's autocomplete answer (counted by the model admin's paginator: the capped one of
    large tables), where a model admin may say how its objects read in the list
    (`autocomplete_label`: a member's email and id beside the name)."""

    def serialize_result(self, obj: Any, to_field_name: str) -> dict[str, str]:
        result = super().serialize_result(obj, to_field_name)
        label = getattr(self.model_admin, "autocomplete_label", None)
        return {**result, "text": label(obj)} if label else result


class LoyaltyAdminSite(admin.AdminSite):
    """Django's admin with the installation's name and a manager's navigation."""

    index_title = "All sections"

    @property  # read on each request: the name is a setting
    def site_header(self) -> str:  # type: ignore[override]
        return site_name()

    @property
    def site_title(self) -> str:  # type: ignore[override]
        return site_name()

    def autocomplete_view(self, request: HttpRequest) -> HttpResponse:
        return LabelledAutocompleteJsonView.as_view(admin_site=self)(request)

    def get_urls(self) -> list:
        return [path("sections/", self.admin_view(self.sections_view), name="sections"), *super().get_urls()]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The first page after login is the dashboard, for staff who may read it (the Owner and
        Manager roles); the others (Support) start on the list of every section they may open."""
        if request.user.has_perm("loyalty.view_reports"):
            return HttpResponseRedirect(reverse("dashboard:home"))
        return HttpResponseRedirect(reverse(f"{self.name}:sections"))

    def sections_view(self, request: HttpRequest) -> HttpResponse:
        """Every group of the navigation with its pages (the stock index page, grouped)."""
        context = {
            **self.each_context(request),
            "title": self.index_title,
            "subtitle": None,
            "app_list": self.get_app_list(request),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/index.html", context)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """Grouped by what a manager does; one app's page (`app_label`) stays Django's."""
        if app_label is not None:
            return super().get_app_list(request, app_label)
        models: dict[tuple[str, str], dict[str, Any]] = {}
        for app in super().get_app_list(request):
            for model in app["models"]:
                models[(app["app_label"], model["object_name"].lower())] = model
        sections_url = reverse(f"{self.name}:sections")
        technical = sees_technical(request.user)
        grouped: list[dict[str, Any]] = []
        placed: set[tuple[str, str]] = set()
        for name, anchor, entries in GROUPS:
            if name == TECHNICAL and not technical:
                placed.update((app_label, model_name) for app_label, model_name, _ in entries)
                continue
            rows = []
            for app_label_, model_name, label in entries:
                model = models.get((app_label_, model_name))
                placed.add((app_label_, model_name))
                if model is not None:
                    rows.append({**model, "name": label or model["name"]})
            if anchor == "reports" and request.user.is_staff:
                rows = _report_links()
            grouped.append({"name": name, "app_label": anchor, "app_url": f"{sections_url}#{anchor}", "models": rows})
        # Models no group names (an app added later): Settings, or Technical for plumbing.
        by_name = {group["name"]: group for group in grouped}
        for key, model in models.items():
            if key in placed:
                continue
            target = TECHNICAL if key[0] in TECHNICAL_APPS else SETTINGS
            if target in by_name:
                by_name[target]["models"].append(model)
        return [{**group, "has_module_perms": True} for group in grouped if group["models"]]


class LoyaltyAdminConfig(AdminConfig):
    """Replaces "django.contrib.admin" in INSTALLED_APPS: the default site is ours."""

    default_site = "config.admin_site.LoyaltyAdminSite"
