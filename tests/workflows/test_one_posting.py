"""An activity that fires several rules posts all its awards in one ledger posting: one
`points_posted` carrying every entry, one idempotency record in the one store."""

from decimal import Decimal

import pytest

from loyalty import errors
from loyalty import services as ledger
from loyalty.models import IdempotencyRecord, LedgerEntry
from loyalty.signals import points_posted
from workflows import services

from .conftest import WEDNESDAY_NOON
from .factories import EarningRuleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_rules(program):
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None, priority=3)
    EarningRuleFactory(program=program, name="Visit bonus", kind="fixed", points=50, priority=2)
    EarningRuleFactory(program=program, name="Shoes bonus", kind="per_item", points=5, include_categories=["shoes"])


@pytest.fixture
def posted():
    calls = []

    def listen(sender, **kwargs):
        calls.append(kwargs)

    points_posted.connect(listen, dispatch_uid="test_one_posting")
    yield calls
    points_posted.disconnect(dispatch_uid="test_one_posting")


def _purchase(program, member, key="k-1", order_id="o-1", amount="40.00"):
    return services.activity_report(
        program=program,
        member=member,
        type="purchase",
        occurred_at=WEDNESDAY_NOON,
        order_id=order_id,
        amount=Decimal(amount),
        items=[{"sku": "S-1", "category": "shoes", "quantity": 2, "unit_price": "20.00"}],
        idempotency_key=key,
    )


def test_a_purchase_firing_three_rules_announces_one_posting_with_three_entries(
    program, member, three_rules, posted, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = _purchase(program, member)
    assert [(e.reason, e.points) for e in result.entries] == [
        ("Points per euro", 40),
        ("Visit bonus", 50),
        ("Shoes bonus", 10),
    ]
    [call] = posted
    assert call["member_id"] == member.pk
    assert [e.id for e in call["entries"]] == [e.id for e in result.entries]
    assert call["balance"].available == 100
    entries = LedgerEntry.objects.filter(activity=result.activity).order_by("id")
    assert [(e.reason, e.points, e.reference) for e in entries] == [
        ("Points per euro", 40, "o-1"),
        ("Visit bonus", 50, "o-1"),
        ("Shoes bonus", 10, "o-1"),
    ]
    ledger_check = ledger.Balance.of(type(member).objects.get(pk=member.pk))
    assert ledger_check.available == ledger_check.lifetime_earned == 100


def test_a_retry_with_the_same_key_returns_the_same_entries_and_posts_nothing(
    program, member, three_rules, posted, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = _purchase(program, member)
        again = _purchase(program, member)
    assert again.replayed
    assert again.activity.pk == first.activity.pk
    assert [e.id for e in again.entries] == [e.id for e in first.entries]
    assert [a.points for a in again.awards] == [a.points for a in first.awards]
    assert again.balance.available == 100
    assert len(posted) == 1
    assert LedgerEntry.objects.filter(member=member).count() == 3


def test_the_activity_key_lives_in_the_one_idempotency_store(program, member, three_rules):
    result = _purchase(program, member, key="abc")
    record = IdempotencyRecord.objects.get(program=program, key="activity:abc")
    assert record.operation == "activity"
    assert record.result == {"activity_id": result.activity.pk}
    assert record.entry_ids == [e.id for e in result.entries]


def test_the_same_key_with_another_activity_is_a_conflict_and_writes_nothing(program, member, three_rules):
    _purchase(program, member, key="k-1")
    with pytest.raises(errors.IdempotencyConflict):
        _purchase(program, member, key="k-1", order_id="o-2")
    assert LedgerEntry.objects.filter(member=member).count() == 3


def test_an_activity_that_earns_nothing_is_still_replayed_by_its_key(program, member):
    first = services.activity_report(
        program=program, member=member, type="store_visit", occurred_at=WEDNESDAY_NOON, idempotency_key="v-1"
    )
    again = services.activity_report(
        program=program, member=member, type="store_visit", occurred_at=WEDNESDAY_NOON, idempotency_key="v-1"
    )
    assert first.points == 0
    assert again.replayed
    assert again.activity.pk == first.activity.pk


def test_an_activity_key_does_not_clash_with_the_same_raw_ledger_key(program, member, three_rules):
    ledger.points_earn(program=program, member_id=member.pk, points=5, idempotency_key="shared")
    result = _purchase(program, member, key="shared")
    assert not result.replayed
    assert result.points == 100


def test_earning_several_lots_of_a_member_in_debt_pays_the_debt_first(program, member, posted):
    ledger.points_adjust(program=program, member_id=member.pk, points=-30, reason="correction", source="test")
    posted.clear()
    result = ledger.points_earn_many(
        program=program,
        member_id=member.pk,
        awards=[ledger.EarnAward(points=20, reason="a"), ledger.EarnAward(points=25, reason="b")],
    )
    assert [(e.reason, e.points, e.remaining) for e in result.entries] == [("a", 20, 0), ("b", 25, 15)]
    assert result.balance.available == 15


def test_earning_no_lots_is_refused(program, member):
    with pytest.raises(errors.InvalidInput):
        ledger.points_earn_many(program=program, member_id=member.pk, awards=[])
