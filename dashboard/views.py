"""The dashboard, the first page a member of staff sees after logging in (docs/dashboard.md).

It reads the daily roll-ups (`dashboard.charts`) and, for the members at risk, one indexed query
on members; never the ledger. Charts are SVG images served by `chart` (no JavaScript), each
with its numbers as CSV from the same table.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext_lazy as _

from loyalty.models import Activity, Member, Program
from loyalty.staff_scope import programs_for

from . import charts
from .models import DailyStat
from .rollups import PASSIVE_ACTIVITY_TYPES

PERMISSION = "loyalty.view_reports"  # the Owner and Manager roles (loyalty migration 0018)
MAX_DAYS = 731  # two years of days: a few thousand roll-up rows at most
DEFAULT_DAYS = 90
AT_RISK_ROWS = 25
CHART_ORDER = (
    "enrolment",
    "active",
    "points",
    "redemption_rate",
    "outstanding",
    "rewards",
    "tiers",
    "tier_moves",
    "rules",
    "revenue",
    "frequency",
)


class DashboardForm(forms.Form):
    program = forms.ModelChoiceField(queryset=Program.objects.none(), label=_("Program"), empty_label=None)
    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))
    bucket = forms.ChoiceField(label=_("Per"), choices=list(charts.BUCKETS.items()))
    idle_days = forms.IntegerField(
        label=_("At risk after (days without activity)"), min_value=1, max_value=3650, initial=60
    )
    min_balance = forms.IntegerField(label=_("with at least (points)"), min_value=1, max_value=10**12, initial=500)

    def __init__(self, *args: Any, programs: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["program"].queryset = programs

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start > end:
                self.add_error("end", _("The end date must be on or after the start date."))
            elif (end - start).days + 1 > MAX_DAYS:
                self.add_error("start", _("Choose at most %(days)s days (two years).") % {"days": MAX_DAYS})
        return data


def _form(request: HttpRequest) -> DashboardForm:
    """The form bound to the query string, with defaults for what it leaves out: the first
    program, the last 90 rolled-up days, per week."""
    programs = programs_for(request.user).order_by("name")
    data = request.GET.copy()
    if not data.get("program"):
        first = programs.first()
        if first is not None:
            data["program"] = str(first.pk)
    program = programs.filter(pk=data.get("program")).first() if str(data.get("program", "")).isdigit() else None
    if not data.get("end"):
        last = None
        if program is not None:
            last = DailyStat.objects.filter(program=program).order_by("-day").values_list("day", flat=True).first()
        data["end"] = (last or timezone.localdate() - dt.timedelta(days=1)).isoformat()
    if not data.get("start"):
        try:
            end = dt.date.fromisoformat(data["end"])
            data["start"] = (end - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        except ValueError:
            data["start"] = ""
    data.setdefault("bucket", "week")
    data.setdefault("idle_days", "60")
    data.setdefault("min_balance", "500")
    return DashboardForm(data, programs=programs)


def _check(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def members_at_risk(program: Program, *, idle_days: int, min_balance: int, now: dt.datetime) -> list[dict[str, Any]]:
    """Members with a large balance and no activity for `idle_days`: the largest balances first.
    One query walking the members' balance index, each checked on its recent-activity index."""
    since = now - dt.timedelta(days=idle_days)
    recent = Activity.objects.filter(member=OuterRef("pk"), occurred_at__gte=since).exclude(
        type__in=PASSIVE_ACTIVITY_TYPES
    )
    members = (
        Member.objects.filter(program=program, available__gt=0, available__gte=min_balance)
        .filter(~Exists(recent))
        .annotate(
            last_activity=Subquery(
                Activity.objects.filter(member=OuterRef("pk"))
                .exclude(type__in=PASSIVE_ACTIVITY_TYPES)
                .order_by("-occurred_at")
                .values("occurred_at")[:1]
            )
        )
        .order_by("-available")[:AT_RISK_ROWS]
    )
    rows = []
    for m in members:
        try:
            url = reverse("admin:loyalty_member_change", args=[m.pk])
        except NoReverseMatch:
            url = ""
        rows.append(
            {
                "member": m,
                "name": str(m),
                "email": m.email,
                "available": m.available,
                "last_activity": m.last_activity,
                "enrolled_at": m.enrolled_at,
                "url": url,
            }
        )
    return rows


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    _check(request)
    form = _form(request)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "form": form,
        "has_programs": form.fields["program"].queryset.exists(),
    }
    if form.is_valid():
        data = form.cleaned_data
        board = charts.build_dashboard(data["program"], data["start"], data["end"], data["bucket"])
        query = form.data.urlencode()
        context.update(
            board=board,
            charts=[board.charts[k] for k in CHART_ORDER],
            query=query,
            at_risk=members_at_risk(
                data["program"], idle_days=data["idle_days"], min_balance=data["min_balance"], now=timezone.now()
            ),
            idle_days=data["idle_days"],
            min_balance=data["min_balance"],
        )
    return render(request, "dashboard/home.html", context)


@staff_member_required
def chart(request: HttpRequest, key: str, fmt: str) -> HttpResponse:
    """One chart of the dashboard as SVG or its numbers as CSV (same query string as the page)."""
    _check(request)
    if key not in CHART_ORDER or fmt not in ("svg", "csv"):
        raise Http404
    form = _form(request)
    if not form.is_valid():
        return HttpResponseBadRequest(
            "; ".join(f"{f}: {' '.join(e)}" for f, e in form.errors.items()), content_type="text/plain"
        )
    data = form.cleaned_data
    board = charts.build_dashboard(data["program"], data["start"], data["end"], data["bucket"], only=key)
    item = board.charts[key]
    if fmt == "csv":
        response = HttpResponse(item.csv(), content_type="text/csv; charset=utf-8")
        name = f"{board.program.slug}-{key}-{data['start']}-{data['end']}-{data['bucket']}.csv"
        response["Content-Disposition"] = content_disposition_header(True, name)
        return response
    response = HttpResponse(item.svg(), content_type="image/svg+xml")
    # The SVG styles itself with an inline <style> and has no script: allow only that.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["Cache-Control"] = "private, max-age=300"
    return response
