"""The dashboard's figures, read from the daily roll-ups only (docs/dashboard.md).

`build_dashboard` turns the `DailyStat`/`DailyBreakdown` rows of a program and date range into
KPIs and charts. A chart is a table (columns and rows) plus how to draw it: the SVG (pygal,
no JavaScript) and the CSV download are both made from that one table, so they show the same
numbers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pygal
from django.db.models import Q, Sum
from django.utils.translation import gettext_lazy as _
from pygal.style import Style

from loyalty.models import Member, Program
from rewards.models import Reward
from tiers.models import Tier
from workflows.models import EarningRule

from .models import DailyBreakdown, DailyStat

SCRIPT = re.compile(rb"<script\b.*?</script>", re.DOTALL)
BUCKETS = {"day": _("Day"), "week": _("Week"), "month": _("Month")}
Dim = DailyBreakdown.Dimension


def bucket_of(day: dt.date, bucket: str) -> dt.date:
    """The first day of the bucket `day` falls in (weeks start on Monday)."""
    if bucket == "week":
        return day - dt.timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def bucket_label(start: dt.date, bucket: str) -> str:
    if bucket == "month":
        return start.strftime("%b %Y")
    if bucket == "week":
        return f"{start:%d %b} wk"
    return start.strftime("%d %b")


@dataclass
class Chart:
    key: str
    title: str
    unit: str
    explanation: str
    kind: str  # "bar", "stacked", "line", "hbar", "pie"
    columns: list[str]
    rows: list[list[Any]]
    series: list[str] = field(default_factory=list)  # columns drawn (default: all but the first)

    @property
    def empty(self) -> bool:
        drawn = self.drawn_columns()
        return not any(row[i] for row in self.rows for i in drawn)

    def drawn_columns(self) -> list[int]:
        names = self.series or self.columns[1:]
        return [self.columns.index(n) for n in names]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([_csv_value(v) for v in row])
        return out.getvalue()

    def svg(self, *, width: int = 640, height: int = 340) -> bytes:
        config: dict[str, Any] = {
            "js": [],  # no script: nothing a CSP would block, nothing from a CDN
            "style": CHART_STYLE,
            "width": width,
            "height": height,
            "show_legend": len(self.drawn_columns()) > 1 or self.kind == "pie",
            "legend_at_bottom": True,
            "legend_at_bottom_columns": 4,
            "y_title": self.unit if self.kind not in ("pie", "hbar") else None,
            "x_label_rotation": 30 if len(self.rows) > 8 else 0,
            "show_minor_x_labels": len(self.rows) <= 16,
            "truncate_label": 18,
            "margin": 8,
            "margin_bottom": 28,
            "no_data_text": str(_("No data for this period")),
            "print_values": False,
        }
        if self.kind == "pie":
            chart = pygal.Pie(inner_radius=0.45, **config)
            col = self.drawn_columns()[0]
            for row in self.rows:
                chart.add(str(row[0]), _number(row[col]))
        else:
            cls = {"bar": pygal.Bar, "stacked": pygal.StackedBar, "line": pygal.Line, "hbar": pygal.HorizontalBar}
            chart = cls[self.kind](**config)
            if self.kind == "hbar":
                rows = list(reversed(self.rows))
                chart.x_labels = [str(r[0]) for r in rows]
            else:
                rows = self.rows
                chart.x_labels = [str(r[0]) for r in rows]
            if len(rows) > 16 and self.kind != "hbar":
                chart.x_labels_major_count = 12
            for i in self.drawn_columns():
                chart.add(self.columns[i], [_number(r[i]) for r in rows])
        # pygal writes its config for its (here absent) tooltip script as an inline <script>
        # even with js=[]: drop it, the image needs no script.
        return SCRIPT.sub(b"", chart.render(is_unicode=False))


CHART_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#333",
    foreground_strong="#222",
    foreground_subtle="#888",
    opacity=".9",
    opacity_hover="1",
    colors=("#417690", "#e0a526", "#ba2121", "#5b9b4b", "#8c6bb1", "#79aec8", "#d17a22", "#999999"),
    font_family="-apple-system, 'Segoe UI', Roboto, Arial, sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=13,
    title_font_size=15,
    value_font_size=12,
    tooltip_font_size=12,
)


def _number(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    return value


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.2f}"
    return value


@dataclass
class Kpi:
    key: str
    label: str
    value: str
    explanation: str


@dataclass
class Dashboard:
    program: Program
    start: dt.date
    end: dt.date
    bucket: str
    kpis: list[Kpi]
    charts: dict[str, Chart]
    has_data: bool
    last_day: dt.date | None


def _fmt_int(n: int | float) -> str:
    return f"{n:,.0f}".replace(",", "\u202f")


def _fmt_money(amount: Decimal | float, currency: str) -> str:
    return f"{amount:,.2f}".replace(",", "\u202f") + f" {currency}"


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


# The breakdown each chart reads (the others read `DailyStat` only).
CHART_DIMENSION = {
    "enrolment": Dim.CHANNEL,
    "rewards": Dim.REWARD,
    "tiers": Dim.TIER,
    "tier_moves": Dim.TIER_MOVE,
    "rules": Dim.RULE,
}


def build_dashboard(
    program: Program, start: dt.date, end: dt.date, bucket: str, *, only: str | None = None
) -> Dashboard:
    """Everything the dashboard shows for `program` over the local days start .. end. With
    `only` (a chart's key), only that chart's breakdown is read: the other charts that need
    one come out empty (the chart URLs serve one chart)."""
    stats = list(DailyStat.objects.filter(program=program, day__gte=start, day__lte=end).order_by("day"))
    # Members per tier is a stock: only the period's last day is read.
    last_in_range = stats[-1].day if stats else end
    parts = list(
        DailyBreakdown.objects.filter(program=program, day__gte=start, day__lte=end)
        .filter(~Q(dimension=Dim.TIER) | Q(day=last_in_range))
        .filter(Q() if only is None else Q(dimension=CHART_DIMENSION.get(only, "")))
        .values_list("day", "dimension", "key", "count", "points")
    )
    last_day = DailyStat.objects.filter(program=program).order_by("-day").values_list("day", flat=True).first()
    buckets: dict[dt.date, list[DailyStat]] = defaultdict(list)
    for s in stats:
        buckets[bucket_of(s.day, bucket)].append(s)
    keys = sorted(buckets)
    labels = {k: bucket_label(k, bucket) for k in keys}

    def total(name: str, days: list[DailyStat]) -> Any:
        return sum(getattr(s, name) for s in days)

    def closing(name: str, days: list[DailyStat]) -> Any:
        return getattr(days[-1], name)

    charts: dict[str, Chart] = {}
    currency = program.currency

    # Enrolment by channel
    channel_names = dict(Member.Channel.choices)
    by_channel: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day, dim, key, count, _pts in parts:
        if dim == Dim.CHANNEL:
            by_channel[bucket_of(day, bucket)][key] += count
    channels = sorted(
        {c for d in by_channel.values() for c in d},
        key=lambda c: list(channel_names).index(c) if c in channel_names else 99,
    )
    charts["enrolment"] = Chart(
        "enrolment",
        str(_("New members by channel")),
        str(_("members")),
        str(_("Members who joined in each period, split by where they joined (shop, till, staff, import…).")),
        "stacked",
        [str(_("Period")), *[str(channel_names.get(c, c)) for c in channels], str(_("Total"))],
        [[labels[k], *[by_channel[k].get(c, 0) for c in channels], total("enrolments", buckets[k])] for k in keys],
        series=[str(channel_names.get(c, c)) for c in channels],
    )
    # Active versus inactive
    charts["active"] = Chart(
        "active",
        str(_("Active and inactive members")),
        str(_("members")),
        str(
            _(
                "At the end of each period: members with an activity (purchase, visit, review…) in the "
                "last 30 days, and the others. The 90-day figure is in the CSV."
            )
        ),
        "stacked",
        [
            str(_("Period")),
            str(_("Active (30 days)")),
            str(_("Inactive")),
            str(_("Active (90 days)")),
            str(_("Members")),
        ],
        [
            [
                labels[k],
                closing("active_30", buckets[k]),
                closing("members", buckets[k]) - closing("active_30", buckets[k]),
                closing("active_90", buckets[k]),
                closing("members", buckets[k]),
            ]
            for k in keys
        ],
        series=[str(_("Active (30 days)")), str(_("Inactive"))],
    )
    # Points
    charts["points"] = Chart(
        "points",
        str(_("Points earned, redeemed and expired")),
        str(_("points")),
        str(_("Points that moved in each period. Adjustments and refunds are in the CSV.")),
        "bar",
        [
            str(_("Period")),
            str(_("Earned")),
            str(_("Redeemed")),
            str(_("Expired")),
            str(_("Adjusted up")),
            str(_("Adjusted down")),
            str(_("Taken back by refunds")),
            str(_("Given back (cancelled redemptions)")),
        ],
        [
            [
                labels[k],
                *[
                    total(n, buckets[k])
                    for n in ("earned", "redeemed", "expired", "adjusted_up", "adjusted_down", "reversed", "restored")
                ],
            ]
            for k in keys
        ],
        series=[str(_("Earned")), str(_("Redeemed")), str(_("Expired"))],
    )
    # Redemption rate
    charts["redemption_rate"] = Chart(
        "redemption_rate",
        str(_("Redemption rate")),
        "%",
        str(_("Points redeemed in the period as a share of the points earned in the same period.")),
        "line",
        [str(_("Period")), str(_("Redemption rate (%)")), str(_("Redeemed")), str(_("Earned"))],
        [
            [
                labels[k],
                _pct(total("redeemed", buckets[k]), total("earned", buckets[k])),
                total("redeemed", buckets[k]),
                total("earned", buckets[k]),
            ]
            for k in keys
        ],
        series=[str(_("Redemption rate (%)"))],
    )
    # Outstanding points
    charts["outstanding"] = Chart(
        "outstanding",
        str(_("Outstanding points")),
        str(_("points")),
        str(
            _(
                "At the end of each period: points members can spend (available), points still in the "
                "return window (pending) and points members owe after refunds (debt)."
            )
        ),
        "line",
        [str(_("Period")), str(_("Available")), str(_("Pending")), str(_("Debt"))],
        [[labels[k], *[closing(n, buckets[k]) for n in ("available", "pending", "debt")]] for k in keys],
    )
    # Rewards
    reward_totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    rule_totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    moves: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    tiers_at_end: dict[str, int] = {}
    for day, dim, key, count, pts in parts:
        if dim == Dim.REWARD:
            reward_totals[key][0] += count
            reward_totals[key][1] += pts
        elif dim == Dim.RULE:
            rule_totals[key][0] += count
            rule_totals[key][1] += pts
        elif dim == Dim.TIER_MOVE:
            moves[bucket_of(day, bucket)][key] += count
        elif dim == Dim.TIER and stats and day == stats[-1].day:
            tiers_at_end[key] = count
    reward_names = {str(pk): name for pk, name in Reward.objects.filter(program=program).values_list("pk", "name")}
    charts["rewards"] = Chart(
        "rewards",
        str(_("Reward popularity")),
        str(_("redemptions")),
        str(_("Rewards redeemed over the whole period, most popular first, with the points spent on each.")),
        "hbar",
        [str(_("Reward")), str(_("Redemptions")), str(_("Points"))],
        sorted(
            ([reward_names.get(k, f"#{k}"), n, pts] for k, (n, pts) in reward_totals.items()),
            key=lambda r: (-r[1], r[0]),
        ),
        series=[str(_("Redemptions"))],
    )
    # Tiers
    tiers = list(Tier.objects.filter(program=program).order_by("position").values_list("pk", "name"))
    if stats and tiers:  # a program without tiers: the empty state, not a pie of "No tier"
        in_tiers = sum(tiers_at_end.values())
        tier_rows = [[str(_("No tier")), stats[-1].members - in_tiers]] if stats[-1].members - in_tiers else []
        tier_rows += [[name, tiers_at_end.get(str(pk), 0)] for pk, name in tiers]
    else:
        tier_rows = []
    charts["tiers"] = Chart(
        "tiers",
        str(_("Members per tier")),
        str(_("members")),
        str(_("How many members are in each tier at the end of the period.")),
        "pie",
        [str(_("Tier")), str(_("Members"))],
        tier_rows,
    )
    move_names = {"join": str(_("Joined a tier")), "upgrade": str(_("Upgrades")), "downgrade": str(_("Downgrades"))}
    charts["tier_moves"] = Chart(
        "tier_moves",
        str(_("Tier moves")),
        str(_("members")),
        str(_("Members who reached a first tier, moved up, or moved down (or out of the tiers) in each period.")),
        "bar",
        [str(_("Period")), *move_names.values()],
        [[labels[k], *[moves[k].get(m, 0) for m in move_names]] for k in keys],
    )
    # Earning rules
    rule_names = {str(pk): name for pk, name in EarningRule.objects.filter(program=program).values_list("pk", "name")}
    charts["rules"] = Chart(
        "rules",
        str(_("Earning-rule performance")),
        str(_("points")),
        str(_("Points each earning rule gave over the period, and how many times it fired.")),
        "hbar",
        [str(_("Earning rule")), str(_("Points")), str(_("Awards"))],
        sorted(
            ([rule_names.get(k, f"#{k}"), pts, n] for k, (n, pts) in rule_totals.items()),
            key=lambda r: (-r[1], r[0]),
        ),
        series=[str(_("Points"))],
    )
    # Revenue and purchase frequency
    charts["revenue"] = Chart(
        "revenue",
        str(_("Revenue from members")),
        currency,
        str(_("What members spent in each period (purchases less refunds), in %(currency)s.") % {"currency": currency}),
        "bar",
        [str(_("Period")), str(_("Revenue")), str(_("Purchases"))],
        [[labels[k], total("revenue", buckets[k]), total("purchases", buckets[k])] for k in keys],
        series=[str(_("Revenue"))],
    )
    charts["frequency"] = Chart(
        "frequency",
        str(_("Purchase frequency")),
        str(_("purchases per 100 members")),
        str(_("Purchases in each period for every 100 members enrolled at the period's end.")),
        "line",
        [str(_("Period")), str(_("Purchases per 100 members")), str(_("Purchases")), str(_("Members"))],
        [
            [
                labels[k],
                _pct(total("purchases", buckets[k]), closing("members", buckets[k])),
                total("purchases", buckets[k]),
                closing("members", buckets[k]),
            ]
            for k in keys
        ],
        series=[str(_("Purchases per 100 members"))],
    )

    kpis = _kpis(program, stats, currency) if only is None else []
    return Dashboard(program, start, end, bucket, kpis, charts, bool(stats), last_day)


def _kpis(program: Program, stats: list[DailyStat], currency: str) -> list[Kpi]:
    if not stats:
        return []
    last = stats[-1]
    earned = sum(s.earned for s in stats)
    redeemed = sum(s.redeemed for s in stats)
    revenue = sum((s.revenue for s in stats), Decimal(0))
    # Lifetime value: every purchase since the program began (the roll-ups of all its days).
    lifetime = DailyStat.objects.filter(program=program, day__lte=last.day).aggregate(r=Sum("revenue"))["r"] or 0
    rate = _pct(redeemed, earned)
    active = _pct(last.active_30, last.members)
    return [
        Kpi("members", str(_("Members")), _fmt_int(last.members), str(_("Enrolled at the end of the period."))),
        Kpi(
            "enrolments",
            str(_("New members")),
            _fmt_int(sum(s.enrolments for s in stats)),
            str(_("Joined during the period, all channels.")),
        ),
        Kpi(
            "active",
            str(_("Active members")),
            f"{active} %" if active is not None else "-",
            str(_("Share of members with an activity in the last 30 days, at the end of the period.")),
        ),
        Kpi("earned", str(_("Points earned")), _fmt_int(earned), str(_("Given for purchases and other activities."))),
        Kpi("redeemed", str(_("Points redeemed")), _fmt_int(redeemed), str(_("Spent on rewards."))),
        Kpi(
            "redemption_rate",
            str(_("Redemption rate")),
            f"{rate} %" if rate is not None else "-",
            str(_("Points redeemed as a share of points earned in the period.")),
        ),
        Kpi(
            "outstanding",
            str(_("Outstanding points")),
            _fmt_int(last.available + last.pending),
            str(_("Available plus pending at the end of the period: what members could still redeem.")),
        ),
        Kpi(
            "revenue",
            str(_("Revenue from members")),
            _fmt_money(revenue, currency),
            str(_("Purchases less refunds by members during the period.")),
        ),
        Kpi(
            "lifetime_value",
            str(_("Average member lifetime value")),
            _fmt_money(Decimal(lifetime) / last.members, currency) if last.members else "-",
            str(_("Everything members spent since the program began, divided by the number of members.")),
        ),
    ]
