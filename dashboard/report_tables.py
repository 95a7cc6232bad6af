"""The three finance reports as plain tables, and their CSV and PDF renderings.

A report (dashboard.liability) becomes a list of `Section`s (one per currency), each with
`Table`s of raw values and a kind per column (points, money, rate, text, date). The HTML page,
the CSV file and the PDF file are three renderings of the same tables, so they always agree.
CSV cells are the raw values (points as integers, money as plain decimals, rates as
fractions); the page and the PDF format them for reading (docs/liability.md).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from django.utils.formats import number_format
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, TableStyle
from reportlab.platypus import Table as PdfTable

from dashboard import liability

POINTS, MONEY, PRICE, RATE, TEXT, DATE = "points", "money", "price", "rate", "text", "date"


@dataclass
class Column:
    label: str
    kind: str = POINTS


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[list[Any]] = field(default_factory=list)
    total_rows: int = 0  # the last N rows are totals (shown in bold)
    note: str = ""
    strong: set[int] = field(default_factory=set)  # other rows shown in bold (subtotals)

    def display_rows(self, currency: str) -> list[list[str]]:
        return [
            [fmt(value, col.kind, currency) for value, col in zip(row, self.columns, strict=True)] for row in self.rows
        ]

    @property
    def bold(self) -> set[int]:
        return self.strong | set(range(len(self.rows) - self.total_rows, len(self.rows)))


@dataclass
class Section:
    currency: str
    tables: list[Table]
    warnings: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)  # (label, formatted value)


def fmt(value: Any, kind: str, currency: str = "") -> str:
    """A cell as a reader sees it: 12,345 points; 1,234.56 EUR; 3.4 %; 2026-01-31."""
    if value is None or value == "":
        return "-"
    if kind == POINTS:
        return number_format(int(value), decimal_pos=0, force_grouping=True)
    if kind == MONEY:
        return (
            f"{number_format(Decimal(value).quantize(liability.CENT), decimal_pos=2, force_grouping=True)} {currency}"
        )
    if kind == PRICE:  # the value of one point: as many decimals as it has, at least 2 (0.005 EUR)
        places = max(2, -Decimal(value).normalize().as_tuple().exponent)
        return f"{number_format(Decimal(value), decimal_pos=places, force_grouping=True)} {currency}"
    if kind == RATE:
        return f"{number_format(Decimal(value) * 100, decimal_pos=1, force_grouping=True)} %"
    if kind == DATE:
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return str(value)


def month_label(first: dt.date, last: dt.date) -> str:
    """2026-03 for a whole month, 2026-03-01..2026-03-10 for part of one."""
    whole = first.day == 1 and (last + dt.timedelta(days=1)).day == 1
    return f"{first:%Y-%m}" if whole else f"{first.isoformat()}..{last.isoformat()}"


def money(amount: Decimal, currency: str) -> str:
    return fmt(amount, MONEY, currency)


# ---------------------------------------------------------------- the liability report


def liability_sections(report: liability.LiabilityReport) -> list[Section]:
    sections = []
    for cur in report.currencies:
        aging = Table(
            title=f"Outstanding points on {report.end:%Y-%m-%d}, by expiry",
            columns=[
                Column("Program", TEXT),
                Column("Expiry", TEXT),
                Column("Points"),
                Column("Value", MONEY),
                Column("Share of points held", RATE),
            ],
            note="Value = points x the program's value of one point (its Finance settings). Points past their "
            "expiry date that the hourly expiry job has not taken yet count as expiring within 30 days. Pending "
            "points (inside the return window) are part of the buckets. Debts are points members owe (refunds "
            "of spent points, negative adjustments); they are not deducted from the value.",
        )
        for item in [*cur.programs, None] if len(cur.programs) > 1 else cur.programs:
            name = (
                f"{item.program.name} (1 point = {fmt(item.value_per_point, PRICE, cur.currency)})"
                if item
                else (f"All {cur.currency} programs")
            )
            age = item.aging if item else cur.aging
            value = item.bucket_value if item else cur.bucket_value
            held = age.held
            for key, label in liability.AGING_BUCKETS:
                points = getattr(age, key)
                aging.rows.append([name, label, points, value(key), Decimal(points) / held if held else None])
            aging.strong.add(len(aging.rows))
            aging.rows.append(
                [name, "Held in total", held, item.value if item else cur.value, Decimal(1) if held else None]
            )
            aging.rows.append([name, "of which pending (not yet available)", age.pending, None, None])
            aging.rows.append([name, "Owed by members (debts)", age.debt, None, None])

        roll = Table(
            title="Monthly roll-forward (points)",
            columns=[
                Column("Program", TEXT),
                Column("Month", TEXT),
                Column("Opening"),
                Column("+ Earned"),
                Column("- Redeemed"),
                Column("- Expired"),
                Column("+/- Adjustments"),
                Column("+/- Reversals"),
                Column("+/- Transfers"),
                Column("= Closing"),
                Column("Ledger at month end"),
                Column("Difference"),
            ],
            note="Opening + earned - redeemed - expired +/- adjustments, reversals (refunds take points back, "
            "cancelled redemptions give them back) and transfers = closing. 'Ledger at month end' is the plain sum "
            "of every ledger entry written before the month's end: the difference must be 0.",
        )
        for item in [*cur.programs, None] if len(cur.programs) > 1 else cur.programs:
            name = item.program.name if item else f"All {cur.currency} programs"
            for r in item.rows if item else cur.rows:
                roll.rows.append(
                    [
                        name,
                        month_label(r.start, r.end),
                        r.opening,
                        r.earned,
                        r.redeemed,
                        r.expired,
                        r.adjusted,
                        r.reversed,
                        r.transferred,
                        r.closing,
                        r.ledger_closing,
                        r.difference,
                    ]
                )
        roll.total_rows = len(cur.rows) if len(cur.programs) > 1 else 0
        facts = [
            ("Points held", fmt(cur.aging.held, POINTS)),
            ("Their value", money(cur.value, cur.currency)),
            ("Points owed by members", fmt(cur.aging.debt, POINTS)),
            ("Programs", ", ".join(p.program.name for p in cur.programs)),
        ]
        sections.append(Section(cur.currency, [aging, roll], warnings=cur.differences, facts=facts))
    return sections


# ---------------------------------------------------------------- breakage


def breakage_sections(report: list[liability.CurrencyBreakage]) -> list[Section]:
    sections = []
    for cur in report:
        table = Table(
            title="Points by the month they were earned",
            columns=[
                Column("Program", TEXT),
                Column("Earned in", TEXT),
                Column("Earned"),
                Column("Redeemed"),
                Column("Expired"),
                Column("Used otherwise"),
                Column("Still outstanding"),
                Column("Settled", TEXT),
                Column("Breakage", RATE),
            ],
            note="Breakage = expired / (expired + redeemed): the share of the month's points that lapsed "
            "rather than being spent. 'Used otherwise': refunds, transfers, negative adjustments and debts paid. "
            "A month is settled once all its points are past their expiry date and none is left.",
        )
        for item in [*cur.programs, None] if len(cur.programs) > 1 else cur.programs:
            name = item.program.name if item else f"All {cur.currency} programs"
            for r in item.rows if item else cur.rows:
                table.rows.append(
                    [
                        name,
                        f"{r.month:%Y-%m}",
                        r.earned,
                        r.redeemed,
                        r.expired,
                        r.other,
                        r.outstanding,
                        "yes" if r.settled else "no",
                        r.breakage,
                    ]
                )
        table.total_rows = len(cur.rows) if len(cur.programs) > 1 else 0
        expected = Table(
            title="Expected breakage used by the deferred-revenue view",
            columns=[
                Column("Program", TEXT),
                Column("Observed breakage (settled months)", RATE),
                Column("Expected redemption rate", RATE),
                Column("Expected breakage", RATE),
                Column("Source", TEXT),
            ],
        )
        for item in cur.programs:
            est = item.estimate
            expected.rows.append(
                [item.program.name, est.observed_breakage, est.rate, Decimal(1) - est.rate, SOURCES[est.source]]
            )
        sections.append(Section(cur.currency, [table, expected]))
    return sections


SOURCES = {
    "setting": "the program's setting",
    "observed": "1 - observed breakage",
    "default": "no settled month yet: 100 % assumed",
}


# ---------------------------------------------------------------- deferred revenue


def deferred_sections(report: list[liability.CurrencyDeferred], start: dt.date, end: dt.date) -> list[Section]:
    sections = []
    for cur in report:
        inputs = Table(
            title="Inputs",
            columns=[
                Column("Program", TEXT),
                Column("Price of a point", PRICE),
                Column("Expected redemption rate", RATE),
                Column("Stand-alone selling price of a point", PRICE),
                Column("Source of the rate", TEXT),
            ],
        )
        movement = Table(
            title=f"Contract liability for points, {start:%Y-%m-%d} to {end:%Y-%m-%d}",
            columns=[
                Column("Program", TEXT),
                Column("Sales with points", MONEY),
                Column("Opening liability", MONEY),
                Column("+ Allocated to new points", MONEY),
                Column("- Revenue recognised", MONEY),
                Column("= Closing liability", MONEY),
            ],
            note="Allocated per purchase: price x SSP of its points / (price + SSP of its points). Revenue "
            "recognised to date = allocated x redeemed / (redeemed + outstanding x expected rate); the period's "
            "revenue is the difference between its end and its start.",
        )
        points = Table(
            title="Points from purchases",
            columns=[
                Column("Program", TEXT),
                Column("At", TEXT),
                Column("Issued"),
                Column("Redeemed"),
                Column("Outstanding"),
                Column("Expected to be redeemed in total"),
                Column("Revenue recognised to date", MONEY),
            ],
        )
        for item in cur.programs:
            est = item.estimate
            inputs.rows.append(
                [item.program.name, item.price_per_point, est.rate, item.ssp_per_point, SOURCES[est.source]]
            )
            movement.rows.append(
                [
                    item.program.name,
                    item.sales,
                    item.opening_liability,
                    item.allocated_in_period,
                    item.revenue,
                    item.closing_liability,
                ]
            )
            for label, m in ((f"start ({start:%Y-%m-%d})", item.opening), (f"end ({end:%Y-%m-%d})", item.closing)):
                points.rows.append(
                    [item.program.name, label, m.issued, m.redeemed, m.outstanding, int(m.expected_total), m.recognised]
                )
        if len(cur.programs) > 1:
            movement.total_rows = 1
            movement.rows.append(
                [
                    f"All {cur.currency} programs",
                    cur.total("sales"),
                    cur.total("opening_liability"),
                    cur.total("allocated_in_period"),
                    cur.total("revenue"),
                    cur.total("closing_liability"),
                ]
            )
        facts = [
            ("Revenue recognised in the period", money(cur.total("revenue"), cur.currency)),
            ("Contract liability at the end", money(cur.total("closing_liability"), cur.currency)),
        ]
        sections.append(Section(cur.currency, [movement, inputs, points], facts=facts))
    return sections


# ---------------------------------------------------------------- files


def _csv_safe(value: Any) -> Any:
    """Text a spreadsheet must not evaluate as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _raw(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    return _csv_safe(value) if isinstance(value, str) else value


def render_csv(title: str, period: str, sections: Iterable[Section]) -> str:
    """One block per table: its header row, its rows, a blank line. The first two cells of
    every row say which currency and which table it belongs to."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([title, period])
    writer.writerow([])
    for section in sections:
        for table in section.tables:
            writer.writerow(["currency", "table", *(c.label for c in table.columns)])
            for row in table.rows:
                writer.writerow([section.currency, table.title, *(_raw(v) for v in row)])
            writer.writerow([])
        for warning in section.warnings:
            writer.writerow([section.currency, "RECONCILIATION DIFFERENCE", warning])
    return out.getvalue()


def render_pdf(title: str, period: str, generated: str, sections: Iterable[Section], explanation: list[str]) -> bytes:
    """A4 landscape: the title, the period, per currency its key figures, warnings and tables."""
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=title,
        author="Loyalty back-office",
        creator="Loyalty back-office",
        invariant=1,
    )
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8.5)
    cell = styles["BodyText"].clone("cell", fontSize=6.5, leading=7.5)
    number = cell.clone("number", alignment=TA_RIGHT)
    warn = styles["BodyText"].clone("warn", textColor=colors.red, fontName="Helvetica-Bold")
    story: list[Any] = [Paragraph(escape(title), styles["Title"]), Paragraph(escape(f"{period}. {generated}"), small)]
    for section in sections:
        story.append(Paragraph(escape(f"Currency: {section.currency}"), styles["Heading2"]))
        for warning in section.warnings:
            story.append(Paragraph(escape(f"Reconciliation difference: {warning}"), warn))
        for label, value in section.facts:
            story.append(Paragraph(f"<b>{escape(label)}:</b> {escape(value)}", small))
        for table in section.tables:
            story.append(Paragraph(escape(table.title), styles["Heading4"]))
            header = [Paragraph(f"<b>{escape(c.label)}</b>", cell) for c in table.columns]
            styles_by_col = [cell if c.kind in (TEXT, DATE) else number for c in table.columns]
            body = [
                [
                    Paragraph(f"<b>{escape(v)}</b>" if i in table.bold else escape(v), style)
                    for v, style in zip(row, styles_by_col, strict=True)
                ]
                for i, row in enumerate(table.display_rows(section.currency))
            ]
            pdf_table = PdfTable([header, *body], repeatRows=1, hAlign="LEFT")
            style = [
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.9, 0.92, 0.95)),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
            for index in sorted(table.bold):
                style.append(("BACKGROUND", (0, index + 1), (-1, index + 1), colors.Color(0.93, 0.93, 0.93)))
            pdf_table.setStyle(TableStyle(style))
            story.append(pdf_table)
            if table.note:
                story.append(Paragraph(escape(table.note), small))
            story.append(Spacer(1, 3 * mm))
    for paragraph in explanation:
        story.append(Paragraph(escape(paragraph), small))
    doc.build(story)
    return out.getvalue()
