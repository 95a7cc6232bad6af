"""Budgets under real concurrency (docs/budgets.md): 20 activities of 20 members released
together against a nearly used budget. The budget's counter row is locked before the member
rows, so the awards queue on it and the last one is cut to what is left: never an overshoot."""

from __future__ import annotations

import pytest
from django.db import transaction

from loyalty.models import LedgerEntry
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.loyalty.test_concurrency import run_together
from workflows import services
from workflows.models import BudgetCut, BudgetUse, ProgramBudget

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _report_all(program, members):
    def buy(i: int) -> int:
        with transaction.atomic(durable=True):
            return services.activity_report(
                program=program,
                member=members[i],
                type="purchase",
                order_id=f"o{i}",
                amount=10,
                occurred_at=WEDNESDAY_NOON,
                now=WEDNESDAY_NOON,
            ).points

    return run_together(len(members), buy)


def test_20_concurrent_activities_never_overshoot_a_rule_budget():
    program = ProgramFactory(timezone="Europe/Paris")
    rule = EarningRuleFactory(program=program, points=10, budget_total=1_000)
    members = [MemberFactory(program=program) for _ in range(20)]
    # Nearly used: 45 points left, for 20 awards of 10.
    BudgetUse.objects.create(
        program=program, scope="rule", owner_id=rule.pk, period_key="total", used=955, updated_at=WEDNESDAY_NOON
    )

    results = _report_all(program, members)

    assert all(kind == "ok" for kind, _ in results), results
    assert sorted(points for _, points in results) == [0] * 15 + [5] + [10] * 4
    assert BudgetUse.objects.get(scope="rule", owner_id=rule.pk).used == 1_000
    assert sum(LedgerEntry.objects.filter(program=program).values_list("points", flat=True)) == 45
    assert BudgetCut.objects.filter(program=program).count() == 16


def test_20_concurrent_activities_never_overshoot_the_program_budget_across_rules():
    program = ProgramFactory(timezone="Europe/Paris")
    EarningRuleFactory(program=program, points=10, priority=2)
    EarningRuleFactory(program=program, points=7, priority=1, budget_per_period=500, budget_period="week")
    ProgramBudget.objects.create(program=program, budget_per_period=100, budget_period="day")
    members = [MemberFactory(program=program) for _ in range(20)]

    results = _report_all(program, members)

    assert all(kind == "ok" for kind, _ in results), results
    assert sum(points for _, points in results) == 100
    assert BudgetUse.objects.get(scope="program", period_key="2026-03-04").used == 100
    assert sum(LedgerEntry.objects.filter(program=program).values_list("points", flat=True)) == 100
