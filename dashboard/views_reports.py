"""The finance reports under /admin/dashboard/reports/: liability (aging and roll-forward),
breakage, and IFRS 15 deferred revenue, each as a page, a CSV file and a PDF file for a chosen
period and program or currency (docs/liability.md).

Staff with the `loyalty.view_financial_reports` permission only; every report covers only
`programs_for(request.user)`. A bad period or an unknown program is a form error (status 400),
never a server error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from dashboard import liability, report_tables
from loyalty.models import Program
from loyalty.staff_scope import programs_for

PERMISSION = "loyalty.view_financial_reports"
MAX_MONTHS = 120


class ReportForm(forms.Form):
    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To (included)", widget=forms.DateInput(attrs={"type": "date"}))
    currency = forms.ChoiceField(label="Currency", required=False)
    program = forms.ModelChoiceField(
        label="Program", queryset=Program.objects.none(), required=False, empty_label="All programs of the currency"
    )

    def __init__(self, *args: Any, programs: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["program"].queryset = programs
        currencies = sorted(set(programs.values_list("currency", flat=True)))
        self.fields["currency"].choices = [("", "All currencies"), *((c, c) for c in currencies)]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                self.add_error("end", "The period ends before it starts.")
            elif (end.year - start.year) * 12 + end.month - start.month >= MAX_MONTHS:
                self.add_error("end", f"Choose a period of at most {MAX_MONTHS // 12} years.")
        program, currency = data.get("program"), data.get("currency")
        if program and currency and program.currency != currency:
            self.add_error("program", f"{program.name} runs in {program.currency}, not {currency}.")
        return data

    def programs(self) -> list[Program]:
        data = self.cleaned_data
        chosen = self.fields["program"].queryset
        if data.get("program"):
            chosen = chosen.filter(pk=data["program"].pk)
        elif data.get("currency"):
            chosen = chosen.filter(currency=data["currency"])
        return list(chosen)


def default_period(today: dt.date) -> tuple[dt.date, dt.date]:
    """The twelve months up to today: from the first day of the month eleven months back."""
    month = today.month - 11
    year = today.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return dt.date(year, month, 1), today


REPORTS: dict[str, dict[str, Any]] = {
    "liability": {
        "title": "Points liability",
        "intro": "What the points members hold are worth at the end of the period, when they expire, and how "
        "the balance moved month by month, reconciled to the ledger.",
    },
    "breakage": {
        "title": "Breakage",
        "intro": "For the points earned in each month: how many were redeemed, how many expired, and the share "
        "that expired rather than being redeemed.",
    },
    "deferred": {
        "title": "Deferred revenue of points (IFRS 15 / ASC 606)",
        "intro": "Part of each purchase's price belongs to the points it earned (a material right). It stays a "
        "contract liability until the points are redeemed, then becomes revenue.",
    },
}

EXPLANATIONS = {
    "liability": [
        "Points are counted from the ledger; a month is a calendar month in the program's time zone, and the "
        "period's end is midnight after the last day.",
        "The closing of the roll-forward is checked three ways: against the sum of every ledger entry, against "
        "the points left in the lots less the debts, and (for a period reaching today) against the members' "
        "balances. Any difference is shown in red at the top.",
    ],
    "breakage": [
        "Points are grouped by the month of the activity that earned them (program time zone). Points moved "
        "by a transfer or given back by a cancelled redemption become new lots and are not counted here.",
        "The expected breakage comes from the program's expected redemption rate if set, else from the "
        "settled months (all points past their expiry date).",
    ],
    "deferred": [
        "Only points earned by purchases carry part of a price; bonus points (sign-up, birthday, staff "
        "adjustments) carry none.",
        "The expected redemption rate is today's estimate: revenue of a past period is computed with it, so a "
        "revised estimate shows as a catch-up in the period you look at.",
    ],
}


def _sections(name: str, programs: list[Program], start: dt.date, end: dt.date) -> list[report_tables.Section]:
    now = timezone.now()
    if name == "liability":
        return report_tables.liability_sections(liability.liability_report(programs, start, end, now=now))
    if name == "breakage":
        return report_tables.breakage_sections(liability.breakage_report(programs, start, end, now=now))
    return report_tables.deferred_sections(liability.deferred_revenue_report(programs, start, end, now=now), start, end)


def _cells(table: report_tables.Table, currency: str) -> list[tuple[bool, list[tuple[str, str]]]]:
    """Per row: bold or not, and the formatted cells with their CSS class (numbers right-aligned)."""
    classes = ["" if c.kind in (report_tables.TEXT, report_tables.DATE) else "num" for c in table.columns]
    bold = table.bold
    return [(i in bold, list(zip(row, classes, strict=True))) for i, row in enumerate(table.display_rows(currency))]


def _report_view(name: str) -> Callable[..., HttpResponse]:
    @staff_member_required
    def view(request: HttpRequest, export: str = "") -> HttpResponse:
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        visible = programs_for(request.user)
        data = request.GET.copy()
        if "start" not in data and "end" not in data:
            start, end = default_period(timezone.localdate())
            data.update({"start": start.isoformat(), "end": end.isoformat()})
        form = ReportForm(data, programs=visible)
        info = REPORTS[name]
        context: dict[str, Any] = {
            **admin.site.each_context(request),
            "title": info["title"],
            "intro": info["intro"],
            "explanation": EXPLANATIONS[name],
            "form": form,
            "report": name,
            "reports": [(key, r["title"], reverse(f"dashboard:report_{key}")) for key, r in REPORTS.items()],
        }
        if not form.is_valid():
            return render(request, "dashboard/reports/report.html", context, status=400)
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
        sections = _sections(name, form.programs(), start, end)
        period = f"Period {start:%Y-%m-%d} to {end:%Y-%m-%d}"
        filename = f"{name}-{start:%Y%m%d}-{end:%Y%m%d}"
        if export == "csv":
            response = HttpResponse(
                report_tables.render_csv(info["title"], period, sections), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
            return response
        if export == "pdf":
            generated = f"Generated {timezone.localtime():%Y-%m-%d %H:%M %Z} by {request.user.get_username()}."
            pdf = report_tables.render_pdf(info["title"], period, generated, sections, EXPLANATIONS[name])
            response = HttpResponse(pdf, content_type="application/pdf")
            response["Content-Disposition"] = f'attachment; filename="{filename}.pdf"'
            return response
        query = request.GET.urlencode() or data.urlencode()
        context.update(
            {
                "period": period,
                "sections": [
                    {
                        "section": s,
                        "tables": [{"table": t, "rows": _cells(t, s.currency)} for t in s.tables],
                    }
                    for s in sections
                ],
                "csv_url": f"{reverse(f'dashboard:report_{name}_csv')}?{query}",
                "pdf_url": f"{reverse(f'dashboard:report_{name}_pdf')}?{query}",
                "no_programs": not sections,
            }
        )
        return render(request, "dashboard/reports/report.html", context)

    view.__name__ = f"report_{name}"
    return view


report_liability = _report_view("liability")
report_breakage = _report_view("breakage")
report_deferred = _report_view("deferred")
