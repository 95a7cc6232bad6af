"""Budgets (docs/budgets.md): awards stop at 100 % with a recorded reason, the 80 % / 100 %
alerts go once per budget and period, periods reset, automations and the program's budget
count too."""

from __future__ import annotations

import datetime as dt

import pytest

from loyalty.models import LedgerEntry
from notifications.models import EmailMessage, EmailSettings, WebhookDelivery
from tests.loyalty.factories import MemberFactory
from tests.notifications.factories import WebhookEndpointFactory
from workflows import automations, selectors, services
from workflows.models import Automation, AutomationRun, BudgetCut, BudgetUse, ProgramBudget

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

pytestmark = pytest.mark.django_db


def _buy(program, member, order: str, *, now: dt.datetime = WEDNESDAY_NOON):
    return services.activity_report(
        program=program, member=member, type="purchase", order_id=order, amount=10, occurred_at=now, now=now
    )


def test_a_rule_stops_at_its_budget_and_the_activity_records_why(program):
    rule = EarningRuleFactory(program=program, name="Double weekend", points=10, budget_total=25)
    member = MemberFactory(program=program)

    results = [_buy(program, member, f"o{i}") for i in range(4)]

    assert [r.points for r in results] == [10, 10, 5, 0]
    assert results[0].budget_notes == []
    assert results[2].budget_notes == [
        'Budget of rule "Double weekend" reached (in all, 25 points): 5 of 10 points given.'
    ]
    assert results[3].budget_notes == [
        'Budget of rule "Double weekend" used up (in all, 25 points): no points instead of 10.'
    ]
    cuts = list(BudgetCut.objects.order_by("id"))
    assert [(c.activity_id, c.rule_id, c.wanted, c.given) for c in cuts] == [
        (results[2].activity.pk, rule.pk, 10, 5),
        (results[3].activity.pk, rule.pk, 10, 0),
    ]
    assert sum(LedgerEntry.objects.filter(member=member).values_list("points", flat=True)) == 25
    assert BudgetUse.objects.get(scope="rule", owner_id=rule.pk, period_key="total").used == 25


def test_the_preview_shows_a_used_up_budget_and_writes_nothing(program):
    EarningRuleFactory(program=program, name="Double weekend", points=10, budget_total=10)
    member = MemberFactory(program=program)
    _buy(program, member, "o1")

    preview = selectors.activity_preview(program=program, member=member, type="purchase", amount=10)

    assert preview.points == 0
    assert preview.budget_notes == [
        'Budget of rule "Double weekend" used up (in all, 10 points): no points instead of 10.'
    ]
    assert BudgetUse.objects.get().used == 10
    assert BudgetCut.objects.count() == 0


def test_a_replayed_activity_shows_its_budget_notes_again(program):
    EarningRuleFactory(program=program, name="Bonus", points=10, budget_total=5)
    member = MemberFactory(program=program)
    first = services.activity_report(
        program=program, member=member, type="purchase", order_id="o1", amount=10, occurred_at=WEDNESDAY_NOON,
        idempotency_key="k1",
    )  # fmt: skip
    again = services.activity_report(
        program=program, member=member, type="purchase", order_id="o1", amount=10, occurred_at=WEDNESDAY_NOON,
        idempotency_key="k1",
    )  # fmt: skip
    assert again.replayed
    assert again.points == first.points == 5
    assert again.budget_notes == first.budget_notes != []


def test_alerts_at_80_and_100_percent_go_once_per_period_and_the_period_resets(program):
    EmailSettings.objects.create(program=program, admin_email="owner@shop.example")
    WebhookEndpointFactory(program=program, events=["budget.threshold"])
    rule = EarningRuleFactory(
        program=program, name="Store bonus", points=40, budget_per_period=100, budget_period="day"
    )
    member = MemberFactory(program=program)
    day_two = WEDNESDAY_NOON + dt.timedelta(days=1)

    day_one_points = [_buy(program, member, f"a{i}").points for i in range(4)]
    day_two_points = [_buy(program, member, f"b{i}", now=day_two).points for i in range(2)]

    assert day_one_points == [40, 40, 20, 0]
    assert day_two_points == [40, 40]  # a new day, a new budget
    emails = list(EmailMessage.objects.filter(kind="budget_threshold").order_by("id"))
    assert [(m.source, m.to_email, m.member_id) for m in emails] == [
        (f"budget:rule:{rule.pk}:2026-03-04:80", "owner@shop.example", None),
        (f"budget:rule:{rule.pk}:2026-03-04:100", "owner@shop.example", None),
        (f"budget:rule:{rule.pk}:2026-03-05:80", "owner@shop.example", None),
    ]
    assert emails[1].data["budget"]["used"] == 100
    assert emails[1].data["budget"]["limit"] == 100
    deliveries = list(WebhookDelivery.objects.filter(event_type="budget.threshold").order_by("id"))
    assert [d.event_key for d in deliveries] == [m.source for m in emails]
    assert '"percent":100' in deliveries[1].body.replace(" ", "")


def test_the_program_budget_counts_every_rule(program):
    EarningRuleFactory(program=program, name="Base", points=10, priority=2)
    EarningRuleFactory(program=program, name="Bonus", points=10, priority=1)
    ProgramBudget.objects.create(program=program, budget_total=25)
    member = MemberFactory(program=program)

    first, second, third = (_buy(program, member, f"o{i}") for i in range(3))

    assert (first.points, second.points, third.points) == (20, 5, 0)
    assert [a.rule.name for a in second.awards] == ["Base"]
    assert second.budget_notes == [
        "Budget of the program reached (in all, 25 points): 5 of 10 points given.",
        "Budget of the program used up (in all, 25 points): no points instead of 10.",
    ]


def test_a_non_stackable_rule_whose_budget_is_used_up_lets_the_rules_below_pay(program):
    EarningRuleFactory(program=program, name="Weekend x2", points=20, priority=5, stackable=False, budget_total=20)
    EarningRuleFactory(program=program, name="Base", points=10, priority=1)
    member = MemberFactory(program=program)

    assert _buy(program, member, "o1").points == 20
    assert _buy(program, member, "o2").points == 10


def test_an_automation_stops_at_its_budget_and_the_run_records_why(program):
    automation = Automation.objects.create(
        program=program, name="Win-back", is_active=True, trigger="daily", period="year",
        award_points=100, budget_total=250,
    )  # fmt: skip
    members = [MemberFactory(program=program, enrolled_at=WEDNESDAY_NOON - dt.timedelta(days=5)) for _ in range(4)]

    result = automations.automations_run(now=WEDNESDAY_NOON, program=program)

    assert result.points == 250
    runs = list(AutomationRun.objects.filter(automation=automation).order_by("member_id"))
    assert [r.points for r in runs] == [100, 100, 50, 0]
    assert runs[2].details["points"]["budget"].startswith('Budget of automation "Win-back" reached')
    assert [c.member_id for c in BudgetCut.objects.order_by("id")] == [members[2].pk, members[3].pk]
    assert sum(LedgerEntry.objects.filter(program=program).values_list("points", flat=True)) == 250


def test_an_automation_respects_the_program_budget(program):
    ProgramBudget.objects.create(program=program, budget_per_period=150, budget_period="month")
    Automation.objects.create(
        program=program, name="Anniversary", is_active=True, trigger="daily", period="year", award_points=100
    )
    for _ in range(3):
        MemberFactory(program=program, enrolled_at=WEDNESDAY_NOON - dt.timedelta(days=5))

    assert automations.automations_run(now=WEDNESDAY_NOON, program=program).points == 150
    assert BudgetUse.objects.get(scope="program", period_key="2026-03").used == 150


def test_budgets_are_in_the_program_document(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True  # no DNS in tests
    from programfiles.export import export_document
    from tests.programfiles.builders import build_program

    document = export_document(build_program())

    weekend = next(r for r in document["earning_rules"] if r["name"] == "Double weekend")
    assert weekend["budget"] == {"total": 100_000, "per_period": 5_000, "period": "week"}
    assert document["automations"][0]["budget"] == {"total": None, "per_period": 2_000, "period": "month"}
    assert document["budget"] == {"total": None, "per_period": 50_000, "period": "month"}


def test_an_event_automation_stops_at_its_budget(program):
    Automation.objects.create(
        program=program, name="Thank you", is_active=True, trigger="activity", activity_type="purchase",
        period="once", award_points=100, budget_per_period=150, budget_period="week",
    )  # fmt: skip
    first, second, third = (
        MemberFactory(program=program, enrolled_at=WEDNESDAY_NOON - dt.timedelta(days=5)) for _ in range(3)
    )

    given = [
        automations.automations_on_event(
            trigger="activity", member_id=m.pk, activity_type="purchase", now=WEDNESDAY_NOON
        ).points
        for m in (first, second, third)
    ]

    assert given == [100, 50, 0]
    assert BudgetUse.objects.get(scope="automation", period_key="2026-W10").used == 150
