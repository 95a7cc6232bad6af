"""The dashboard's figures computed the slow, obvious way from the ledger and the other tables,
one day at a time, in Python: what the roll-ups must equal (docs/dashboard.md)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from typing import Any

from loyalty.models import Activity, Allocation, LedgerEntry, Member, Program
from tiers.models import TierChange


def day_bounds(program: Program, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return program.start_of_day(day), program.start_of_day(day + dt.timedelta(days=1))


def truth(program: Program, day: dt.date) -> dict[str, Any]:
    start, end = day_bounds(program, day)
    entries = list(LedgerEntry.objects.filter(program=program))
    allocs = list(Allocation.objects.filter(lot__program=program))
    today = [e for e in entries if start <= e.created_at < end]

    def total(kind: str, sign: int) -> int:
        return sum(abs(e.points) for e in today if e.kind == kind and (e.points > 0) == (sign > 0))

    pending = 0
    for lot in entries:
        if lot.points > 0 and lot.created_at < end and (lot.released_at is None or lot.released_at >= end):
            pending += lot.points - sum(a.points for a in allocs if a.lot_id == lot.id and a.created_at < end)
    debt = 0
    for debit in entries:
        if debit.points < 0 and debit.created_at < end:
            debt -= debit.points + sum(a.points for a in allocs if a.debit_id == debit.id and a.created_at < end)
    net = sum(e.points for e in entries if e.created_at < end)

    members = Member.objects.filter(program=program)
    acts = Activity.objects.filter(program=program).exclude(type="birthday")

    def active(days: int) -> int:
        first, _ = day_bounds(program, day - dt.timedelta(days=days - 1))
        return acts.filter(occurred_at__gte=first, occurred_at__lt=end).values("member").distinct().count()

    purchases = Activity.objects.filter(program=program, type="purchase", occurred_at__gte=start, occurred_at__lt=end)
    refunds = Activity.objects.filter(program=program, type="refund", occurred_at__gte=start, occurred_at__lt=end)
    tiers: Counter[str] = Counter()
    for m in members:
        last = TierChange.objects.filter(member=m, at__lt=end).order_by("-at", "-id").first()
        if last is not None and last.to_tier_id is not None:
            tiers[str(last.to_tier_id)] += 1
    return {
        "enrolments": members.filter(enrolled_at__gte=start, enrolled_at__lt=end).count(),
        "members": members.filter(enrolled_at__lt=end).count(),
        "active_30": active(30),
        "active_90": active(90),
        "earned": total("earn", 1),
        "redeemed": total("redeem", -1),
        "expired": total("expire", -1),
        "adjusted_up": total("adjust", 1),
        "adjusted_down": total("adjust", -1),
        "reversed": total("reversal", -1),
        "restored": total("reversal", 1),
        "transferred": total("transfer", 1),
        "pending": pending,
        "debt": debt,
        "available": net - pending + debt,
        "purchases": purchases.count(),
        "revenue": sum((a.amount or Decimal(0) for a in purchases), Decimal(0))
        - sum((a.amount or Decimal(0) for a in refunds), Decimal(0)),
        "tiers": {k: v for k, v in tiers.items() if v},
    }


def rolled_up(program: Program, day: dt.date) -> dict[str, Any]:
    from dashboard.models import DailyBreakdown, DailyStat

    s = DailyStat.objects.get(program=program, day=day)
    out = {
        name: getattr(s, name)
        for name in (
            "enrolments",
            "members",
            "active_30",
            "active_90",
            "earned",
            "redeemed",
            "expired",
            "adjusted_up",
            "adjusted_down",
            "reversed",
            "restored",
            "transferred",
            "pending",
            "debt",
            "available",
            "purchases",
            "revenue",
        )
    }
    out["tiers"] = dict(
        DailyBreakdown.objects.filter(program=program, day=day, dimension="tier").values_list("key", "count")
    )
    return out
