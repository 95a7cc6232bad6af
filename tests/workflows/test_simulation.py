"""The replay (workflows.simulation) and the explanation (workflows.rules.explain).

The equivalence test generates histories through `activity_report` and `refund_report` (caps,
tier multipliers and tier conditions with in-report upgrades, a manual tier, stacking and a
non-stackable rule, refunds) and checks that replaying the live rules gives back every rule
award and the ledger's earn and reversal entries. Its histories fit the documented
approximations: reports in the order the activities occurred (each with its own `now`), and
every activity earns something (the posting time then dates the member's tier exactly).
"""

import datetime as dt
import random
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.models import Activity, LedgerEntry
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.tiers.factories import TierFactory
from tiers.services import tier_set_manual
from workflows import rules, selectors, services, simulation
from workflows.models import EarningRule, RuleAward

from .conftest import PARIS
from .factories import EarningRuleFactory

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=PARIS)  # a Monday
CATEGORIES = ["apparel", "home", "food"]


def _rule_set(program, tiers):
    _silver, gold = tiers
    EarningRuleFactory(program=program, name="Base", kind="per_amount", points=None, priority=0)
    EarningRuleFactory(
        program=program, name="Weekend x2", kind="per_amount", points=None, multiplier=2, days_of_week=[5, 6]
    )
    EarningRuleFactory(program=program, name="Shop visit", channel="pos", points=15, cap_per_day=20, priority=5)
    EarningRuleFactory(
        program=program, name="Big basket", points=40, min_amount=Decimal("60"), cap_per_week=100, cap_lifetime=300
    )
    EarningRuleFactory(
        program=program,
        name="Home month",
        kind="per_category",
        points=Decimal("0.5"),
        include_categories=["home"],
        cap_per_month=90,
    )
    gold_only = EarningRuleFactory(program=program, name="Gold bonus", points=25, priority=3)
    gold_only.tiers.set([gold])
    EarningRuleFactory(
        program=program,
        name="Food flash (exclusive)",
        points=70,
        priority=10,
        stackable=False,
        include_categories=["food"],
        starts_at=START + dt.timedelta(days=9),
        ends_at=START + dt.timedelta(days=12),
    )
    EarningRuleFactory(program=program, name="Signup", trigger="signup", points=30, cap_lifetime=30)


def _history(seed, *, members=4, activities=70):
    """A program with tiers and rules, and activities reported in order through the services."""
    rng = random.Random(seed)
    program = ProgramFactory(timezone="Europe/Paris", earn_rate=1, expiry_days=None, point_value=Decimal("0.01"))
    silver = TierFactory(program=program, name="Silver", position=1, threshold=150, multiplier=Decimal("1.5"))
    gold = TierFactory(program=program, name="Gold", position=2, threshold=600, multiplier=Decimal("2"))
    _rule_set(program, (silver, gold))
    people = [MemberFactory(program=program) for _ in range(members)]
    moment = START
    orders: list[tuple[str, Decimal]] = []
    for number in range(activities):
        moment += dt.timedelta(hours=rng.choice([1, 2, 3, 5, 9, 20]), minutes=rng.randrange(60))
        now = moment + dt.timedelta(seconds=rng.randrange(1, 50))
        member = rng.choice(people)
        roll = rng.random()
        if roll < 0.07:
            services.activity_report(program=program, member=member, type="signup", occurred_at=moment, now=now)
        elif roll < 0.13 and orders:
            order_id, amount = rng.choice(orders)
            refunded = Activity.objects.filter(program=program, order_id=order_id, type="refund").aggregate(
                s=Sum("amount")
            )["s"] or Decimal(0)
            part = min(amount - refunded, Decimal(rng.randrange(1, 60)))
            if part > 0:
                services.refund_report(program=program, order_id=order_id, amount=part, occurred_at=moment, now=now)
        elif roll < 0.16:
            tier = rng.choice([silver, gold, None])
            tier_set_manual(member=member, tier=tier, until=now + dt.timedelta(days=2), reason="test", now=now)
        else:
            items = [
                {
                    "sku": f"S{rng.randrange(5)}",
                    "category": rng.choice(CATEGORIES),
                    "quantity": rng.randrange(1, 3),
                    "unit_price": Decimal(rng.randrange(3, 40)),
                }
                for _ in range(rng.randrange(0, 3))
            ]
            amount = sum((Decimal(i["unit_price"]) * i["quantity"] for i in items), Decimal(0)) or Decimal(
                rng.randrange(5, 120)
            )
            order_id = f"o-{seed}-{number}"
            services.activity_report(
                program=program,
                member=member,
                type="purchase",
                occurred_at=moment,
                order_id=order_id,
                amount=amount,
                channel=rng.choice(["online", "pos"]),
                items=items,
                now=now,
            )
            orders.append((order_id, amount))
    return program, moment + dt.timedelta(hours=1)


def _live_awards(program, since, until):
    found: dict[int, dict[int, int]] = {}
    for activity_id, rule_id, points in RuleAward.objects.filter(
        rule__program=program, occurred_at__gte=since, occurred_at__lt=until
    ).values_list("activity_id", "rule_id", "points"):
        found.setdefault(activity_id, {})[rule_id] = points
    return found


def _ledger(program, kind, since=None):
    entries = LedgerEntry.objects.filter(program=program, kind=kind)
    if since is not None:
        entries = entries.filter(occurred_at__gte=since)
    return entries.aggregate(s=Sum("points"))["s"] or 0


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replaying_the_live_rules_reproduces_every_award_and_the_ledger(seed):
    program, until = _history(seed)
    since = START - dt.timedelta(days=1)
    result = simulation.replay(program=program, since=since, until=until, keep_awards=True)
    live = _live_awards(program, since, until)
    assert {a: p for a, p in result.awards.items() if p} == live
    assert result.points == result.live_points == _ledger(program, "earn")
    assert result.reversed == result.live_reversed == -_ledger(program, "reversal")
    assert result.liability_difference == 0
    assert result.members_affected == 0
    assert all(r.points == r.live_points and r.awards == r.live_awards for r in result.rules)
    assert all(d.points == d.live_points for d in result.days)


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [4, 5])
def test_a_period_that_starts_mid_week_counts_the_caps_used_before_it(seed):
    program, until = _history(seed, activities=90)
    since = program.start_of_day(program.local_date(START + dt.timedelta(days=8)))  # a Tuesday
    result = simulation.replay(program=program, since=since, until=until, keep_awards=True)
    assert {a: p for a, p in result.awards.items() if p} == _live_awards(program, since, until)
    assert result.points == _ledger(program, "earn", since=since)


@pytest.mark.django_db(transaction=True)
def test_replay_writes_nothing_and_runs_read_only():
    program, until = _history(7, activities=25)
    draft = [EarningRule(program=program, name="Everything x3", kind="per_amount", multiplier=3, trigger="purchase")]
    with CaptureQueriesContext(connection) as queries:
        result = simulation.replay(program=program, since=START, until=until, rules_=draft)
    statements = [q["sql"].lstrip().split()[0].upper() for q in queries.captured_queries]
    assert not {"INSERT", "UPDATE", "DELETE"} & set(statements)
    assert any("READ ONLY" in q["sql"] for q in queries.captured_queries)
    assert result.points > result.live_points
    assert draft[0].pk is None  # the caller's rule is not touched


@pytest.mark.django_db
def test_a_draft_reports_points_money_members_and_tier_changes():
    program, until = _history(8)
    base = EarningRule(program=program, name="Base", code="base", kind="per_amount", trigger="purchase")
    triple = EarningRule(program=program, name="Triple", kind="per_amount", multiplier=2, trigger="purchase")
    result = simulation.replay(program=program, since=START, until=until, rules_=[base, triple])
    by_name = {r.name: r for r in result.rules}
    assert by_name["Base"].in_set
    assert by_name["Base"].live_points > 0
    assert not by_name["Shop visit"].in_set
    assert by_name["Shop visit"].points == 0
    assert by_name["Triple"].points > 0
    assert by_name["Triple"].live_points == 0
    assert result.points == sum(r.points for r in result.rules)
    assert result.money(result.points) == (Decimal(result.points) / 100).quantize(Decimal("0.01"))
    assert sum(n for _, n, _ in result.buckets) == result.members
    assert result.members_affected > 0
    assert "thresholds" in result.tier_note
    assert result.csv().splitlines()[0] == "section,key,simulated,live,difference"


@pytest.mark.django_db
def test_stored_activity_explanation_matches_what_it_earned():
    program, _until = _history(9, activities=40)
    for activity in Activity.objects.filter(program=program).exclude(type="refund").order_by("id"):
        explained = selectors.stored_activity_explain(activity=activity)
        assert explained.explanation.points == explained.live_points, activity.pk


# --- explain and evaluate share one walk -------------------------------------------------------

_money = st.decimals(min_value=0, max_value=200, places=2)
_cap = st.one_of(st.none(), st.integers(min_value=0, max_value=120))


@st.composite
def _rules(draw):
    found = []
    for number in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(st.sampled_from(["fixed", "per_amount", "per_item", "per_category"]))
        rule = EarningRule(
            id=number + 1,
            name=f"R{number}",
            trigger=draw(st.sampled_from(["purchase", "signup"])),
            kind=kind,
            points=draw(st.decimals(min_value=0, max_value=50, places=2)),
            multiplier=draw(st.sampled_from([Decimal(1), Decimal(2), Decimal("1.5"), Decimal(0)])),
            min_amount=draw(st.one_of(st.none(), _money)),
            channel=draw(st.sampled_from(["", "online", "pos"])),
            days_of_week=draw(st.lists(st.integers(min_value=0, max_value=6), max_size=3)),
            include_categories=["home"] if kind == "per_category" else draw(st.sampled_from([[], ["home"]])),
            cap_per_order=draw(_cap),
            cap_per_day=draw(_cap),
            cap_lifetime=draw(_cap),
            priority=draw(st.integers(min_value=0, max_value=3)),
            stackable=draw(st.booleans()),
            is_active=draw(st.booleans()),
        )
        rule.tier_ids = draw(st.sampled_from([frozenset(), frozenset({1}), frozenset({1, 2})]))
        found.append(rule)
    return found


@st.composite
def _facts(draw):
    items = tuple(
        rules.Item(sku="S", category=draw(st.sampled_from(["home", "food"])), quantity=2, unit_price=Decimal("7.5"))
        for _ in range(draw(st.integers(min_value=0, max_value=3)))
    )
    return rules.ActivityFacts(
        type=draw(st.sampled_from(["purchase", "signup"])),
        occurred_at=START,
        weekday=draw(st.integers(min_value=0, max_value=6)),
        amount=draw(st.one_of(st.none(), _money)),
        channel=draw(st.sampled_from(["", "online", "pos"])),
        items=items,
    )


@settings(max_examples=300, deadline=None)
@given(
    found=_rules(),
    facts=_facts(),
    used=st.integers(min_value=0, max_value=150),
    tier=st.sampled_from([(None, Decimal(1)), (1, Decimal("1.5")), (2, Decimal(2))]),
)
def test_explain_fires_exactly_what_evaluate_awards(found, facts, used, tier):
    usage = {r.id: rules.Usage(day=used, week=used, month=used, lifetime=used) for r in found}
    kwargs = {"usage": usage, "earn_rate": Decimal(1), "tier_multiplier": tier[1], "tier_id": tier[0]}
    awards = rules.evaluate(found, facts, **kwargs)
    explanation = rules.explain(found, facts, **kwargs)
    assert [(s.rule.id, s.points) for s in explanation.fired] == [(a.rule.id, a.points) for a in awards]
    assert len(explanation.steps) == len(found)
    for step in explanation.steps:
        assert step.fired or step.reason


def _rule(**fields):
    rule = EarningRule(id=fields.pop("id", 1), name=fields.pop("name", "Rule"), trigger="purchase", **fields)
    rule.tier_ids = frozenset()
    return rule


def _facts_of(amount="12.00", channel="online", weekday=2):
    return rules.ActivityFacts(
        type="purchase", occurred_at=START, weekday=weekday, amount=Decimal(amount), channel=channel
    )


def test_explanations_name_the_failed_condition_in_words():
    found = [
        _rule(id=1, name="POS", kind="fixed", points=5, channel="pos"),
        _rule(id=2, name="Min", kind="fixed", points=5, min_amount=Decimal(20)),
        _rule(id=3, name="Campaign", kind="fixed", points=5, ends_at=START),
        _rule(id=4, name="Daily", kind="fixed", points=5, cap_per_day=500),
    ]
    usage = {4: rules.Usage(day=500)}
    steps = {s.rule.name: s for s in rules.explain(found, _facts_of(), usage=usage, earn_rate=Decimal(1)).steps}
    assert steps["POS"].reason == "channel is online, the rule needs pos"
    assert steps["Min"].reason == "amount 12.00 below minimum 20.00"
    assert steps["Campaign"].reason.startswith("outside the campaign dates")
    assert steps["Daily"].reason == "capped to 0 by the daily cap 500 (used 500)"


def test_explanation_says_a_non_stackable_rule_stopped_the_rest_and_explains_stacking():
    found = [
        _rule(id=1, name="Exclusive", kind="fixed", points=5, priority=9, stackable=False, min_amount=Decimal(50)),
        _rule(id=2, name="Base", kind="per_amount"),
        _rule(id=3, name="Double points weekend", kind="per_amount", multiplier=2),
    ]
    explanation = rules.explain(found, _facts_of("10.00"), usage={}, earn_rate=Decimal(1))
    double = next(s for s in explanation.steps if s.rule.name == "Double points weekend")
    assert explanation.points == 30
    assert explanation.stacking(double) == (
        "the base rule Base gives 10 and this rule (x2) gives 20 more: 30 in all (3x the base)"
    )
    stopped = rules.explain(found, _facts_of("60.00"), usage={}, earn_rate=Decimal(1))
    assert [s.reason for s in stopped.steps[1:]] == ["stopped: rule Exclusive above is not stackable"] * 2
