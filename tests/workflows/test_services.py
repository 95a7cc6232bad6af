import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty import errors
from loyalty.models import Activity, LedgerEntry, Member
from tests.tiers.factories import TierFactory
from tiers.services import tier_set_manual
from workflows import selectors, services
from workflows.models import RuleAward

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

pytestmark = pytest.mark.django_db

ITEMS = [
    {"sku": "TEE-1", "category": "apparel", "quantity": 2, "unit_price": Decimal("15.00")},
    {"sku": "MUG-1", "category": "home", "quantity": 1, "unit_price": Decimal("10.00")},
    {"sku": "GIFT", "category": "giftcards", "quantity": 1, "unit_price": Decimal("50.00")},
]


_orders = iter(range(1, 10**6))


def purchase(program, member, *, amount="90.00", when=WEDNESDAY_NOON, items=(), channel="online", **kwargs):
    return services.activity_report(
        program=program,
        member=member,
        type="purchase",
        occurred_at=when,
        order_id=kwargs.pop("order_id", f"order-{next(_orders)}"),
        amount=Decimal(amount),
        channel=channel,
        items=items,
        **kwargs,
    )


def test_fixed_rule_posts_its_points_with_the_rule_name_as_reason(program, member):
    EarningRuleFactory(program=program, name="Welcome bonus", trigger="signup", points=50)
    result = services.activity_report(program=program, member=member, type="signup", occurred_at=WEDNESDAY_NOON)
    assert result.points == 50
    (entry,) = result.entries
    assert (entry.kind, entry.points, entry.reason) == ("earn", 50, "Welcome bonus")
    assert entry.activity_id == result.activity.id
    assert entry.occurred_at == WEDNESDAY_NOON
    assert result.balance.available == 50
    assert RuleAward.objects.get().points == 50


def test_per_amount_rule_uses_the_program_rate_rounded_down(program, member, per_amount_rule):
    program.earn_rate = Decimal("1.5")
    program.save()
    result = purchase(program, member, amount="19.99")
    assert result.points == 29  # floor(29.985)


def test_per_amount_rule_with_its_own_rate(program, member):
    EarningRuleFactory(program=program, kind="per_amount", points=Decimal("2"))
    assert purchase(program, member, amount="10.50").points == 21


def test_per_item_rule_counts_the_units_bought(program, member):
    EarningRuleFactory(program=program, kind="per_item", points=5)
    assert purchase(program, member, items=ITEMS).points == 20  # 4 units


def test_per_category_rule_pays_per_unit_spent_in_its_categories(program, member):
    EarningRuleFactory(program=program, kind="per_category", points=2, include_categories=["apparel"])
    assert purchase(program, member, items=ITEMS).points == 60  # 2 x 30.00


def test_per_sku_rule_pays_per_unit_of_its_skus(program, member):
    EarningRuleFactory(program=program, kind="per_sku", points=7, include_skus=["TEE-1"])
    assert purchase(program, member, items=ITEMS).points == 14


def test_excluded_categories_do_not_earn_on_a_per_amount_rule(program, member):
    EarningRuleFactory(program=program, kind="per_amount", points=1, exclude_categories=["giftcards"])
    assert purchase(program, member, items=ITEMS).points == 40


def test_excluded_sku_does_not_count_as_an_item(program, member):
    EarningRuleFactory(program=program, kind="per_item", points=1, exclude_skus=["GIFT"])
    assert purchase(program, member, items=ITEMS).points == 3


def test_rule_with_included_categories_does_not_fire_without_such_an_item(program, member):
    EarningRuleFactory(program=program, kind="fixed", points=100, include_categories=["shoes"])
    assert purchase(program, member, items=ITEMS).points == 0


def test_minimum_order_amount(program, member):
    EarningRuleFactory(program=program, points=25, min_amount=Decimal("50"))
    assert purchase(program, member, amount="49.99").points == 0
    assert purchase(program, member, amount="50.00").points == 25


def test_channel_condition(program, member):
    EarningRuleFactory(program=program, points=5, channel="pos")
    assert purchase(program, member, channel="online").points == 0
    assert purchase(program, member, channel="pos").points == 5


def test_campaign_window_counts_the_activity_time_with_an_exclusive_end(program, member):
    start = WEDNESDAY_NOON
    EarningRuleFactory(program=program, points=30, starts_at=start, ends_at=start + dt.timedelta(days=2))
    assert purchase(program, member, when=start - dt.timedelta(seconds=1)).points == 0
    assert purchase(program, member, when=start).points == 30
    assert purchase(program, member, when=start + dt.timedelta(days=2)).points == 0


def test_days_of_week_are_in_the_program_time_zone(program, member):
    EarningRuleFactory(program=program, points=8, days_of_week=[5, 6])  # weekend
    saturday_0030_paris = dt.datetime(2026, 3, 6, 23, 30, tzinfo=dt.UTC)  # Friday in UTC
    assert purchase(program, member, when=saturday_0030_paris).points == 8
    friday_2330_paris = dt.datetime(2026, 3, 6, 22, 30, tzinfo=dt.UTC)
    assert purchase(program, member, when=friday_2330_paris).points == 0


def test_bonus_multiplier_applies_before_rounding_down(program, member):
    EarningRuleFactory(program=program, kind="per_amount", points=1, multiplier=Decimal("1.5"))
    assert purchase(program, member, amount="9.99").points == 14  # floor(14.985)


def test_daily_cap_limits_the_points_of_a_rule_per_member_and_local_day(program, member, other_member):
    EarningRuleFactory(program=program, name="Store visit", trigger="store_visit", points=10, cap_per_day=15)

    def visit(who, when):  # reported live: daily caps count by the reporting day too (docs/fraud.md)
        return services.activity_report(program=program, member=who, type="store_visit", occurred_at=when, now=when)

    assert visit(member, WEDNESDAY_NOON).points == 10
    assert visit(member, WEDNESDAY_NOON + dt.timedelta(hours=1)).points == 5
    assert visit(member, WEDNESDAY_NOON + dt.timedelta(hours=2)).points == 0
    assert visit(other_member, WEDNESDAY_NOON).points == 10
    assert visit(member, WEDNESDAY_NOON + dt.timedelta(hours=12)).points == 10  # next day in Paris
    assert Activity.objects.filter(member=member).count() == 4  # stored even when nothing was earned


def test_weekly_monthly_and_lifetime_caps(program, member):
    EarningRuleFactory(program=program, trigger="review", points=10, cap_per_week=20, cap_per_month=30)
    EarningRuleFactory(program=program, trigger="social_share", points=10, cap_lifetime=10)

    def report(kind, when):
        return services.activity_report(program=program, member=member, type=kind, occurred_at=when).points

    days = [WEDNESDAY_NOON + dt.timedelta(days=n) for n in (0, 1, 2, 7, 8)]
    assert [report("review", d) for d in days] == [10, 10, 0, 10, 0]
    assert [report("social_share", d) for d in days[:2]] == [10, 0]


def test_per_order_cap(program, member):
    EarningRuleFactory(program=program, kind="per_amount", points=1, cap_per_order=40)
    assert purchase(program, member, amount="90.00").points == 40
    assert purchase(program, member, amount="30.00").points == 30


def test_rules_stack_and_each_posts_its_own_entry(program, member, per_amount_rule):
    EarningRuleFactory(program=program, name="Big basket", points=20, min_amount=50)
    result = purchase(program, member, amount="60.00")
    assert sorted((e.reason, e.points) for e in result.entries) == [("Big basket", 20), ("Points per euro", 60)]
    assert result.balance.available == 80


def test_non_stackable_rule_stops_lower_priority_rules_only(program, member, per_amount_rule):
    EarningRuleFactory(program=program, name="High", points=1, priority=20)
    EarningRuleFactory(
        program=program, name="Double weekend", kind="per_amount", points=2, priority=10, stackable=False
    )
    # per_amount_rule has priority 0: stopped.
    result = purchase(program, member, amount="10.00")
    assert sorted(a.rule.name for a in result.awards) == ["Double weekend", "High"]
    assert result.points == 21


def test_non_stackable_rule_that_does_not_fire_does_not_stop_others(program, member, per_amount_rule):
    EarningRuleFactory(program=program, points=100, priority=10, stackable=False, channel="pos")
    assert purchase(program, member, amount="10.00", channel="online").points == 10


def test_inactive_rules_and_other_triggers_do_nothing(program, member):
    EarningRuleFactory(program=program, points=10, is_active=False)
    EarningRuleFactory(program=program, points=10, trigger="signup")
    result = purchase(program, member)
    assert result.points == 0
    assert result.entries == []
    assert result.balance.available == 0


def test_custom_event_earns_by_its_rule(program, member):
    EarningRuleFactory(program=program, trigger="newsletter_signup", points=15)
    result = services.activity_report(
        program=program, member=member, type="newsletter_signup", occurred_at=WEDNESDAY_NOON, data={"list": "news"}
    )
    assert result.points == 15
    assert result.activity.data == {"list": "news"}


def test_tier_multiplier_applies_to_purchase_points_only(program, member, per_amount_rule):
    from tiers.services import tier_create, tier_set_manual

    gold = tier_create(
        program=program,
        name="Gold",
        position=1,
        threshold=Decimal(10**9),
        multiplier=Decimal("1.5"),
        retention_days=365,
    )
    tier_set_manual(member=member, tier=gold, until=WEDNESDAY_NOON + dt.timedelta(days=3650), reason="test")
    EarningRuleFactory(program=program, trigger="review", points=10)
    assert purchase(program, member, amount="10.00").points == 15
    assert (
        services.activity_report(program=program, member=member, type="review", occurred_at=WEDNESDAY_NOON).points == 10
    )


def test_blocked_member_is_refused_and_nothing_is_stored(program, member, per_amount_rule):
    Member.objects.filter(pk=member.pk).update(status="blocked")
    with pytest.raises(errors.MemberBlocked):
        purchase(program, member)
    assert not Activity.objects.exists()


def test_an_order_is_reported_once(program, member, per_amount_rule):
    purchase(program, member, order_id="A-1")
    with pytest.raises(errors.Conflict):
        purchase(program, member, order_id="A-1")
    assert LedgerEntry.objects.count() == 1


def test_idempotent_retry_returns_the_first_result_and_posts_nothing(program, member, per_amount_rule):
    first = purchase(program, member, order_id="A-2", idempotency_key="k1")
    again = purchase(program, member, order_id="A-2", idempotency_key="k1")
    assert again.replayed
    assert again.activity.id == first.activity.id
    assert [e.id for e in again.entries] == [e.id for e in first.entries]
    assert again.points == first.points
    assert LedgerEntry.objects.count() == 1
    with pytest.raises(errors.IdempotencyConflict):
        purchase(program, member, order_id="A-3", idempotency_key="k1")


def test_refund_reverses_the_order_points_in_proportion(program, member, per_amount_rule):
    EarningRuleFactory(program=program, points=10)
    purchase(program, member, order_id="R-1", amount="100.00")  # 110 points
    result = services.refund_report(program=program, order_id="R-1", amount=Decimal("50.00"))
    assert sum(e.points for e in result.entries) == -55
    assert result.balance.available == 55
    with pytest.raises(errors.RefundExceedsOrder):
        services.refund_report(program=program, order_id="R-1", amount=Decimal("50.01"))


def test_preview_computes_like_a_report_and_posts_nothing(program, member, per_amount_rule):
    EarningRuleFactory(program=program, name="Cap", trigger="purchase", points=10, cap_per_day=10)
    purchase(program, member, amount="5.00")
    entries_before = LedgerEntry.objects.count()
    preview = selectors.activity_preview(
        program=program, member=member, type="purchase", occurred_at=WEDNESDAY_NOON, amount=Decimal("42.00")
    )
    assert preview.points == 42  # the capped rule is used up today
    assert LedgerEntry.objects.count() == entries_before
    assert Activity.objects.count() == 1


def test_report_queries_do_not_grow_with_the_number_of_items(program, member, per_amount_rule):
    purchase(program, member, items=ITEMS[:1])  # the active rules are then remembered for both
    with CaptureQueriesContext(connection) as few:
        purchase(program, member, items=ITEMS[:1])
    with CaptureQueriesContext(connection) as many:
        purchase(program, member, items=ITEMS * 20)
    assert len(many) == len(few)


def test_tier_condition_limits_a_rule_to_members_in_its_tiers(program, member, other_member):
    silver = TierFactory(program=program, name="Silver", threshold=100)
    gold = TierFactory(program=program, name="Gold", threshold=1000)
    services.rule_create(
        program=program, name="Gold weekend bonus", trigger="purchase", kind="fixed", points=Decimal(40), tiers=[gold]
    )
    services.rule_create(
        program=program,
        name="Silver and Gold",
        trigger="purchase",
        kind="fixed",
        points=Decimal(5),
        tiers=[silver, gold],
    )
    until = WEDNESDAY_NOON + dt.timedelta(days=30)
    tier_set_manual(member=member, tier=gold, until=until, reason="test", now=WEDNESDAY_NOON - dt.timedelta(days=1))
    assert purchase(program, member).points == 45
    assert purchase(program, other_member).points == 0  # no tier: neither rule
    tier_set_manual(
        member=other_member, tier=silver, until=until, reason="test", now=WEDNESDAY_NOON - dt.timedelta(days=1)
    )
    assert purchase(program, other_member).points == 5
    preview = selectors.activity_preview(program=program, member=member, type="purchase", occurred_at=WEDNESDAY_NOON)
    assert preview.points == 45


def test_tier_condition_refuses_tiers_of_another_program(program):
    foreign = TierFactory()
    with pytest.raises(errors.InvalidInput):
        services.rule_create(
            program=program, name="Bad", trigger="purchase", kind="fixed", points=Decimal(5), tiers=[foreign]
        )
    assert not program.earning_rules.exists()


def test_active_rules_are_remembered_and_forgotten_when_a_rule_changes(program, member, per_amount_rule):
    selectors.active_rules_forget()
    with CaptureQueriesContext(connection) as first:
        selectors.active_rules(program=program, trigger="purchase")
    with CaptureQueriesContext(connection) as again:
        rules_ = selectors.active_rules(program=program, trigger="purchase")
    assert (len(first), len(again)) == (2, 0)
    assert [r.pk for r in rules_] == [per_amount_rule.pk]
    per_amount_rule.is_active = False
    per_amount_rule.save()
    assert selectors.active_rules(program=program, trigger="purchase") == []


def test_enrolment_with_a_refused_card_enrols_nobody(program):
    from cards import errors as card_errors
    from tests.cards.factories import CardFactory
    from tests.loyalty.factories import MemberFactory

    taken = CardFactory(program=program, member=MemberFactory(program=program))
    with pytest.raises(card_errors.CardNotAssignable):
        services.member_enrol_with_card(program=program, external_id="new-1", card_number=taken.number)
    assert not Member.objects.filter(external_id="new-1").exists()
    member, created = services.member_enrol_with_card(program=program, external_id="new-1")
    assert created
    assert [c.kind for c in member.cards.all()] == ["digital"]
    again, created = services.member_enrol_with_card(program=program, external_id="new-1", card_number=taken.number)
    assert (again.pk, created, again.cards.count()) == (member.pk, False, 1)
