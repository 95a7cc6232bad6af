"""The admin's "Simulate" page (docs/simulation.md): a period's stored activities replayed
against the live rules, the open draft's or the earning rules of a program file, nothing written; the result
with a chart per day and a CSV download. Needs "view earning rule" and the program in the
user's scope."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

import pygal
from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from pygal.style import Style

from loyalty import errors
from loyalty.admin import scope_form
from loyalty.models import Program
from workflows import simulation
from workflows.models import EarningRule

from . import selectors
from .draft_rules import rules_from_document
from .export import DocumentUnreadable, loads
from .loading import DocumentInvalid

MAX_BYTES = 5 * 1024 * 1024
MAX_DAYS = 3660
SCRIPT = re.compile(rb"<script\b.*?</script>", re.DOTALL)
CHART_STYLE = Style(
    background="white",
    plot_background="white",
    colors=("#417690", "#c9c9c9"),
    font_family="-apple-system, 'Segoe UI', Roboto, sans-serif",
)


class SimulateForm(forms.Form):
    program = forms.ModelChoiceField(queryset=Program.objects.order_by("name"))
    days = forms.IntegerField(
        min_value=1, max_value=MAX_DAYS, required=False, help_text="The last N days, today included."
    )
    since = forms.DateField(required=False, help_text="Or a date range: first day (YYYY-MM-DD)…")
    until = forms.DateField(required=False, help_text="…and last day, included.")
    source = forms.ChoiceField(
        choices=[
            ("live", "The live earning rules"),
            ("draft", "The earning rules of the program's open draft"),
            ("file", "The earning rules of a program file"),
        ],
        initial="live",
        widget=forms.RadioSelect,
        label="Rules",
    )
    file = forms.FileField(required=False, label="Program file", help_text="YAML or JSON (Download configuration).")
    text = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        days, since, until = data.get("days"), data.get("since"), data.get("until")
        if days is not None and (since or until):
            raise forms.ValidationError("Give a number of days or a date range, not both.")
        if days is None and not since:
            raise forms.ValidationError("Give a number of days or a date range.")
        if until and not since:
            self.add_error("since", "A date range needs its first day.")
        if since and until and until < since:
            self.add_error("until", "The last day is before the first.")
        if since and until and (until - since).days >= MAX_DAYS:
            self.add_error("until", f"At most {MAX_DAYS} days.")
        upload = data.get("file")
        if upload is not None:
            if upload.size > MAX_BYTES:
                self.add_error("file", "The file is larger than 5 MB.")
            else:
                try:
                    data["text"] = upload.read().decode("utf-8")
                except UnicodeDecodeError:
                    self.add_error("file", "The file is not UTF-8 text.")
        if data.get("source") == "file" and not data.get("text") and "file" not in self.errors:
            self.add_error("file", "Choose the program file whose rules to replay.")
        return data


def chart_svg(result: simulation.Replay) -> bytes:
    """Points per day, simulated beside live (pygal, without its script)."""
    chart = pygal.Bar(
        js=[],
        style=CHART_STYLE,
        width=760,
        height=300,
        legend_at_bottom=True,
        x_label_rotation=30 if len(result.days) > 8 else 0,
        show_minor_x_labels=len(result.days) <= 16,
        y_title="points",
        margin=8,
        no_data_text="No activity in this period",
    )
    chart.x_labels = [f"{d.day:%d %b}" for d in result.days]
    if len(result.days) > 16:
        chart.x_labels_major_count = 12
    chart.add("Simulated", [d.points for d in result.days])
    chart.add("Live rules", [d.live_points for d in result.days])
    return SCRIPT.sub(b"", chart.render(is_unicode=False))


def _period(program: Program, data: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    if data.get("since"):
        until = data.get("until") or program.local_date(timezone.now())
        return simulation.period_of_dates(program=program, since=data["since"], until=until)
    return simulation.period_of_days(program=program, days=data["days"], now=timezone.now())


def simulate(request: HttpRequest) -> HttpResponse:
    """GET: the form (?program=ID preselects). POST: the replay, or its CSV (`export=csv`)."""
    if not request.user.has_perm("workflows.view_earningrule"):
        raise PermissionDenied
    if request.method == "POST":
        form = scope_form(SimulateForm(request.POST, request.FILES), request.user)
    else:
        source = request.GET.get("source") if request.GET.get("source") in ("live", "draft", "file") else "live"
        initial = {"days": 30, "source": source, "program": request.GET.get("program")}
        form = scope_form(SimulateForm(initial=initial), request.user)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "opts": EarningRule._meta,
        "title": "Simulate earning rules on past activities",
        "form": form,
    }
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        program = data["program"]
        rules = None
        if data["source"] == "draft":
            try:
                rules = selectors.draft_rules(program)
            except errors.NotFound:
                context["problems"] = [f"{program.name} has no open draft: start one on the program's page."]
        if data["source"] == "file":
            try:
                rules = rules_from_document(program=program, document=loads(data["text"]))
            except DocumentUnreadable as exc:
                context["problems"] = [str(exc)]
            except DocumentInvalid as exc:
                context["problems"] = [str(p) for p in exc.problems]
        if not context.get("problems"):
            since, until = _period(program, data)
            result = simulation.replay(program=program, since=since, until=until, rules_=rules)
            if request.POST.get("export") == "csv":
                response = HttpResponse(result.csv(), content_type="text/csv; charset=utf-8")
                name = f"{program.slug}-simulation-{program.local_date(since)}-{program.local_date(until)}.csv"
                response["Content-Disposition"] = content_disposition_header(True, name)
                return response
            context.update(
                result=result,
                chart=base64.b64encode(chart_svg(result)).decode(),
                text=data["text"],
                last_day=program.local_date(until - dt.timedelta(microseconds=1)),
                first_day=program.local_date(since),
                points_difference=f"{result.points - result.live_points:+d}",
                value=result.money(result.points),
                live_value=result.money(result.live_points),
                liability_value=result.money(result.liability_difference),
            )
    return TemplateResponse(request, "admin/programfiles/simulate.html", context)
