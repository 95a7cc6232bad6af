"""The tiers part of `manage.py load_demo` (run on `demo_loaded`): three tiers whose thresholds
sit at the 50th and 85th percentile of the demo members' points, so that each tier has members,
then the nightly evaluation at the last six month ends and as of now. Once per program: a
program with tiers is left alone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from loyalty.models import Member, Program

from . import services
from .models import MemberTier


def demo_tiers_load(*, program: Program, now: dt.datetime) -> str:
    if program.tiers.exists():
        return "Tiers: the demo program has tiers; left as they are."
    earned = sorted(Member.objects.filter(program=program).values_list("lifetime_earned", flat=True))
    if not earned:
        return "Tiers: no members, none created."

    def at(share: float) -> Decimal:
        value = earned[min(len(earned) - 1, int(len(earned) * share))]
        return Decimal(max(100, round(value, -2)))

    silver, gold = at(0.5), at(0.85)
    if gold <= silver:
        gold = silver + 100
    services.tier_create(
        program=program, name="Bronze", position=1, threshold=Decimal(0), benefits="Welcome drink on your birthday."
    )
    services.tier_create(
        program=program,
        name="Silver",
        position=2,
        threshold=silver,
        multiplier=Decimal("1.25"),
        benefits="1.25x beans on purchases; free shipping.",
        retention_days=90,
    )
    services.tier_create(
        program=program,
        name="Gold",
        position=3,
        threshold=gold,
        multiplier=Decimal("1.5"),
        benefits="1.5x beans on purchases; free tasting every month.",
        retention_days=180,
    )
    # The nightly evaluation as it would have run at the last six month ends, then now: the
    # dashboard's tier moves have a history (the evaluation reads the ledger up to its `now`).
    upgrades = 0
    for months_back in range(6, 0, -1):
        day = program.local_date(now).replace(day=1)
        for _ in range(months_back - 1):
            day = (day - dt.timedelta(days=1)).replace(day=1)
        upgrades += services.tiers_evaluate(now=program.start_of_day(day), program=program).upgrades
    result = services.tiers_evaluate(now=now, program=program)
    upgrades += result.upgrades
    counts = {
        name: MemberTier.objects.filter(member__program=program, tier__name=name).count()
        for name in ("Bronze", "Silver", "Gold")
    }
    return (
        f"Tiers: Bronze (0), Silver ({silver}), Gold ({gold}) beans; members per tier "
        f"{counts['Bronze']} / {counts['Silver']} / {counts['Gold']} ({upgrades} upgrades over six months)."
    )
