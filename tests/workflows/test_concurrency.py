"""Caps under real concurrency: threads with their own connections, released together.
The member row is locked before the caps are read, so simultaneous activities of one member
cannot each take the last points of a cap."""

from __future__ import annotations

import pytest
from django.db import transaction

from loyalty.models import LedgerEntry
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.loyalty.test_concurrency import run_together
from workflows import services
from workflows.models import RuleAward

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_concurrent_store_visits_never_exceed_the_daily_cap():
    program = ProgramFactory(timezone="Europe/Paris")
    member = MemberFactory(program=program)
    EarningRuleFactory(program=program, trigger="store_visit", points=10, cap_per_day=30)

    def visit(i: int) -> int:
        with transaction.atomic(durable=True):
            return services.activity_report(
                program=program, member=member, type="store_visit", occurred_at=WEDNESDAY_NOON
            ).points

    results = run_together(8, visit)
    assert all(kind == "ok" for kind, _ in results), results
    assert sorted(points for _, points in results) == [0] * 5 + [10] * 3
    assert sum(RuleAward.objects.values_list("points", flat=True)) == 30
    assert sum(LedgerEntry.objects.values_list("points", flat=True)) == 30
