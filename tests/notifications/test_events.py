"""Each webhook event comes from the real action, for subscribed endpoints of the program only."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from standardwebhooks import Webhook

from loyalty import services as ledger
from notifications import events
from notifications.models import EventType, ExpiryScanCursor, WebhookDelivery
from rewards import services as rewards
from tests.loyalty.factories import MemberFactory, PurchaseFactory
from tests.rewards.factories import RewardFactory
from tests.tiers.factories import TierFactory
from tiers import services as tiers
from tiers.models import TierChange

from .factories import WebhookEndpointFactory

T0 = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def sent(receiver, django_capture_on_commit_callbacks):
    """Run an action with its after-commit callbacks; return the bodies it sent (by type)."""

    def run(action, path="/hooks"):
        before = len(receiver.requests)
        with django_capture_on_commit_callbacks(execute=True):
            action()
        return [json.loads(r["body"]) for r in receiver.requests[before:] if r["path"] == path]

    return run


def by_type(bodies, event_type):
    return [b for b in bodies if b["type"] == event_type]


def test_enrolling_a_member_sends_member_enrolled(endpoint, program, sent):
    bodies = sent(lambda: ledger.member_enrol(program=program, external_id="shop-42", email="ada@example.com"))
    [body] = bodies
    assert body["type"] == "member.enrolled"
    assert body["data"]["external_id"] == "shop-42"
    assert body["data"]["channel"] == "online"
    assert "ada@example.com" not in json.dumps(body)


def test_enrolling_an_existing_external_id_sends_nothing(endpoint, program, sent):
    sent(lambda: ledger.member_enrol(program=program, external_id="shop-42"))
    assert sent(lambda: ledger.member_enrol(program=program, external_id="shop-42")) == []


def test_earning_sends_points_earned_with_the_balance(endpoint, member, sent):
    [body] = sent(lambda: ledger.points_earn(program=member.program, member_id=member.pk, points=250, reference="o-1"))
    assert body["type"] == "points.earned"
    data = body["data"]
    assert data["member_id"] == member.pk
    assert data["external_id"] == member.external_id
    assert data["entry"]["kind"] == "earn"
    assert data["entry"]["points"] == 250
    assert data["entry"]["reference"] == "o-1"
    assert data["balance"] == {"available": 250, "pending": 0, "lifetime_earned": 250, "redeemed": 0, "expired": 0}


def test_redeeming_a_reward_sends_points_redeemed_with_the_coupon(endpoint, program, member, sent):
    ledger.points_earn(program=program, member_id=member.pk, points=1000)
    reward = RewardFactory(program=program, cost_points=500)
    result = None

    def redeem():
        nonlocal result
        result = rewards.reward_redeem(program=program, member=member, reward=reward)

    [body] = sent(redeem)
    assert body["type"] == "points.redeemed"
    assert body["data"]["entry"]["points"] == -500
    assert body["data"]["redemption"] == {
        "id": result.redemption.pk,
        "code": result.redemption.code,
        "reward_id": reward.pk,
    }
    assert body["data"]["balance"]["available"] == 500


def test_staff_adjustments_both_ways_send_points_adjusted(endpoint, program, member, staff, sent):
    bodies = sent(
        lambda: (
            ledger.points_adjust(program=program, member_id=member.pk, points=80, reason="Goodwill", actor=staff),
            ledger.points_adjust(program=program, member_id=member.pk, points=-30, reason="Typo", actor=staff),
        )
    )
    assert [(b["type"], b["data"]["entry"]["points"]) for b in bodies] == [
        ("points.adjusted", 80),
        ("points.adjusted", -30),
    ]
    assert bodies[0]["data"]["entry"]["reason"] == "Goodwill"


def test_a_refund_and_a_transfer_send_points_adjusted_with_their_kind(endpoint, program, member, sent):
    purchase = PurchaseFactory(member=member, amount=Decimal("100"))
    other = MemberFactory(program=program)
    ledger.points_earn(program=program, member_id=member.pk, points=100, activity=purchase)
    bodies = sent(
        lambda: (
            ledger.points_reverse_order(program=program, order_id=purchase.order_id, amount=Decimal("50")),
            ledger.points_transfer(program=program, from_member_id=member.pk, to_member_id=other.pk, points=20),
        )
    )
    seen = [
        (b["type"], b["data"]["entry"]["kind"], b["data"]["member_id"], b["data"]["entry"]["points"]) for b in bodies
    ]
    assert sorted(seen) == sorted(
        [
            ("points.adjusted", "reversal", member.pk, -50),
            ("points.adjusted", "transfer", member.pk, -20),
            ("points.adjusted", "transfer", other.pk, 20),
        ]
    )


def test_the_expiry_job_sends_points_expired_per_member(endpoint, program, sent):
    ada, bob = MemberFactory(program=program), MemberFactory(program=program)
    for m in (ada, bob):
        ledger.points_earn(program=program, member_id=m.pk, points=40, occurred_at=T0, now=T0)
        ledger.points_earn(program=program, member_id=m.pk, points=60, occurred_at=T0, now=T0)
    later = T0 + dt.timedelta(days=400)

    bodies = sent(lambda: ledger.points_expire(now=later))

    assert sorted((b["type"], b["data"]["member_id"], b["data"]["entry"]["points"]) for b in bodies) == sorted(
        [("points.expired", ada.pk, -100), ("points.expired", bob.pk, -100)]
    )
    assert all(b["data"]["balance"]["expired"] == 100 for b in bodies)
    # A second run expires nothing and sends nothing; a rescan from the start sends nothing twice.
    assert sent(lambda: ledger.points_expire(now=later)) == []
    ExpiryScanCursor.objects.filter(pk=1).update(last_entry_id=0)
    assert events.expired_points_collect() == 0


def test_expiries_move_the_scan_cursor_without_reading_entries_when_nobody_listens(program, member, sent):
    ledger.points_earn(program=program, member_id=member.pk, points=40, occurred_at=T0, now=T0)
    assert sent(lambda: ledger.points_expire(now=T0 + dt.timedelta(days=400))) == []
    assert ExpiryScanCursor.objects.get(pk=1).last_entry_id == member.entries.order_by("-id").first().id
    assert not WebhookDelivery.objects.exists()


def test_a_tier_upgrade_sends_tier_changed(endpoint, program, member, sent):
    silver = TierFactory(program=program, name="Silver", position=1, threshold=Decimal("100"))

    def upgrade():
        ledger.points_earn(program=program, member_id=member.pk, points=150)
        tiers.tier_evaluate_member(member=member)

    [body] = by_type(sent(upgrade), "tier.changed")
    change = TierChange.objects.get(member=member)
    assert body["data"]["change_id"] == change.pk
    assert body["data"]["kind"] == "upgrade"
    assert body["data"]["from_tier"] is None
    assert body["data"]["to_tier"] == {"id": silver.pk, "name": "Silver", "position": 1}
    assert body["data"]["external_id"] == member.external_id


def test_using_and_cancelling_coupons_send_redemption_events(endpoint, program, member, sent):
    ledger.points_earn(program=program, member_id=member.pk, points=2000)
    reward = RewardFactory(program=program, cost_points=500)
    used = rewards.reward_redeem(program=program, member=member, reward=reward).redemption
    kept = rewards.reward_redeem(program=program, member=member, reward=reward).redemption

    [body] = sent(lambda: rewards.redemption_use(program=program, code=used.code, order_id="order-9"))
    assert body["type"] == "redemption.used"
    assert body["data"]["code"] == used.code
    assert body["data"]["order_id"] == "order-9"
    assert body["data"]["status"] == "used"
    assert body["data"]["points"] == 500

    bodies = sent(lambda: rewards.redemption_cancel(program=program, code=kept.code))
    [cancelled] = by_type(bodies, "redemption.cancelled")
    assert cancelled["data"]["code"] == kept.code
    assert cancelled["data"]["refunded"] is True
    [returned] = by_type(bodies, "points.adjusted")  # the points coming back
    assert returned["data"]["entry"]["kind"] == "reversal"
    assert returned["data"]["entry"]["points"] == 500
    assert cancelled["data"]["refund_entry_id"] == returned["data"]["entry"]["id"]


def test_only_subscribed_active_endpoints_of_the_program_get_events(program, other_program, receiver, sent, staff):
    only_earned = WebhookEndpointFactory(program=program, url=receiver.url + "/earned", events=["points.earned"])
    WebhookEndpointFactory(program=program, url=receiver.url + "/off", is_active=False)
    WebhookEndpointFactory(program=other_program, url=receiver.url + "/other")
    member = MemberFactory(program=program)

    def actions():
        ledger.member_enrol(program=program, external_id="new-1")
        ledger.points_earn(program=program, member_id=member.pk, points=10)
        ledger.points_adjust(program=program, member_id=member.pk, points=5, reason="x", actor=staff)

    sent(actions)
    assert [(r["path"], json.loads(r["body"])["type"]) for r in receiver.requests] == [
        ("/hooks/earned", "points.earned")
    ]
    assert WebhookDelivery.objects.get().endpoint == only_earned
    Webhook(only_earned.secret).verify(receiver.requests[0]["body"], receiver.requests[0]["headers"])


def test_an_event_for_several_endpoints_is_one_delivery_each_with_its_own_id(program, member, receiver, sent):
    a = WebhookEndpointFactory(program=program, url=receiver.url + "/a")
    b = WebhookEndpointFactory(program=program, url=receiver.url + "/b")
    sent(lambda: ledger.points_earn(program=program, member_id=member.pk, points=10))
    ids = {r["path"]: r["headers"]["webhook-id"] for r in receiver.requests}
    assert set(ids) == {"/hooks/a", "/hooks/b"}
    assert len(set(ids.values())) == 2
    for endpoint in (a, b):
        [request] = [r for r in receiver.requests if r["path"].endswith(f"/{'a' if endpoint == a else 'b'}")]
        Webhook(endpoint.secret).verify(request["body"], request["headers"])


def test_imported_members_send_member_enrolled(endpoint, program, sent):
    members = [MemberFactory(program=program, enrollment_channel="import") for _ in range(3)]
    bodies = sent(lambda: events.members_imported_events(program_id=program.id, member_ids=[m.pk for m in members]))
    assert sorted(b["data"]["member_id"] for b in bodies) == sorted(m.pk for m in members)
    assert {b["data"]["channel"] for b in bodies} == {"import"}


def test_a_webhook_failure_never_breaks_the_ledger(endpoint, member, sent, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("outbox down")

    monkeypatch.setattr(events, "points_posted_events", broken)
    result = None

    def earn():
        nonlocal result
        result = ledger.points_earn(program=member.program, member_id=member.pk, points=10)

    assert sent(earn) == []
    assert result.balance.available == 10


def test_an_event_nobody_listens_to_costs_one_query(program, member, django_assert_num_queries):
    WebhookEndpointFactory(program=program, events=[EventType.MEMBER_ENROLLED])
    entry = ledger.points_earn(program=program, member_id=member.pk, points=10).entries[0]
    with django_assert_num_queries(1):
        assert (
            events.points_posted_events(program_id=program.id, member_id=member.pk, balance=None, entries=[entry]) == []
        )


def test_nobody_listening_is_remembered_until_an_endpoint_is_saved(program, django_assert_num_queries):
    from notifications import selectors

    selectors.endpoints_forget()
    with django_assert_num_queries(1):
        assert selectors.endpoints_subscribed(program_id=program.pk, event_types={"tier.changed"}) == []
    with django_assert_num_queries(0):
        for _ in range(100):
            selectors.endpoints_subscribed(program_id=program.pk, event_types={"tier.changed"})
    endpoint = WebhookEndpointFactory(program=program, events=["tier.changed"])
    assert selectors.endpoints_subscribed(program_id=program.pk, event_types={"tier.changed"}) == [endpoint]
