import datetime as dt
import io
from decimal import Decimal

import pytest

from loyalty import errors
from loyalty import services as ledger
from loyalty.models import LedgerEntry, Member
from loyalty.selectors import ledger_problems
from rewards import codes, services
from rewards.errors import CouponAlreadyUsed, CouponNotFound, CouponNotUsable, RewardNotFound, RewardUnavailable
from rewards.models import Redemption, Reward, RewardSettings
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.tiers.factories import TierFactory
from tiers.services import tier_set_manual

from .conftest import NOW
from .factories import RewardFactory

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def balance(member):
    member.refresh_from_db()
    return member.available


def redeem(program, member, reward, **kwargs):
    kwargs.setdefault("now", NOW)
    return services.reward_redeem(program=program, member=member, reward=reward, **kwargs)


def test_codes_are_readable_and_normalised():
    code = codes.new_code()
    assert len(code) == 14
    assert code.count("-") == 2
    assert not set(code.replace("-", "")) & set("0O1IL2Z5S8BDQUV")
    assert codes.normalize(code.lower().replace("-", " ")) == code
    assert codes.normalize("0000-0000-0000") == ""
    assert len({codes.new_code() for _ in range(2000)}) == 2000


def test_redeem_spends_points_and_issues_a_coupon(program, member, reward, django_capture_on_commit_callbacks):
    from rewards.signals import reward_redeemed

    seen = []
    reward_redeemed.connect(lambda sender, **kw: seen.append(kw["redemption"].code), weak=False, dispatch_uid="t1")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            result = redeem(program, member, reward)
    finally:
        reward_redeemed.disconnect(dispatch_uid="t1")
    coupon = result.redemption
    assert (coupon.status, coupon.points) == ("issued", 500)
    assert (coupon.kind, coupon.value) == ("amount_off", Decimal("5.0000"))
    assert codes.normalize(coupon.code) == coupon.code
    assert result.balance.available == 500 == balance(member)
    entry = coupon.entry
    assert (entry.kind, entry.points, entry.reference) == ("redeem", -500, coupon.code)
    assert seen == [coupon.code]
    assert not list(ledger_problems())


def test_insufficient_points_and_minimum_redemption_write_nothing(program, member):
    costly = RewardFactory(program=program, cost_points=5000)
    with pytest.raises(errors.InsufficientPoints):
        redeem(program, member, costly)
    cheap = RewardFactory(program=program, cost_points=50)  # under the program's minimum of 100
    with pytest.raises(errors.BelowMinimumRedemption):
        redeem(program, member, cheap)
    assert not Redemption.objects.exists()
    assert balance(member) == 1000


def test_availability_refusals(program, member):
    cases = {
        "inactive": RewardFactory(program=program, is_active=False),
        "not_started": RewardFactory(program=program, starts_at=NOW + DAY),
        "ended": RewardFactory(program=program, ends_at=NOW),
        "out_of_stock": RewardFactory(program=program, stock=0),
    }
    for reason, reward in cases.items():
        with pytest.raises(RewardUnavailable) as info:
            redeem(program, member, reward)
        assert info.value.details["reason"] == reason
    assert balance(member) == 1000


def test_minimum_tier(program, member):
    silver = TierFactory(program=program, name="Silver", position=1)
    gold = TierFactory(program=program, name="Gold", position=2)
    reward = RewardFactory(program=program, min_tier=silver)
    with pytest.raises(RewardUnavailable) as info:
        redeem(program, member, reward)
    assert info.value.details["reason"] == "tier"
    tier_set_manual(member=member, tier=gold, until=NOW + 30 * DAY, reason="test", now=NOW - DAY)
    assert redeem(program, member, reward).redemption.points == 500


def test_per_member_limit_counts_used_but_not_cancelled_coupons(program, member):
    reward = RewardFactory(program=program, cost_points=100, per_member_limit=2)
    first = redeem(program, member, reward).redemption
    redeem(program, member, reward)
    with pytest.raises(RewardUnavailable) as info:
        redeem(program, member, reward)
    assert info.value.details["reason"] == "limit_reached"
    services.redemption_cancel(program=program, code=first.code, now=NOW)
    redeem(program, member, reward)  # a cancelled coupon frees its place
    other = MemberFactory(program=program)
    ledger.points_earn(program=program, member_id=other.pk, points=100, now=NOW)
    redeem(program, other, reward)  # the limit is per member


def test_stock_is_taken_and_given_back(program, member):
    reward = RewardFactory(program=program, cost_points=100, stock=1)
    coupon = redeem(program, member, reward).redemption
    reward.refresh_from_db()
    assert reward.issued_count == 1
    with pytest.raises(RewardUnavailable):
        redeem(program, member, reward)
    services.redemption_cancel(program=program, code=coupon.code, now=NOW)
    reward.refresh_from_db()
    assert reward.issued_count == 0
    redeem(program, member, reward)


def test_a_refused_redemption_returns_the_stock(program):
    poor = MemberFactory(program=program)
    reward = RewardFactory(program=program, stock=1)
    with pytest.raises(errors.InsufficientPoints):
        redeem(program, poor, reward)
    reward.refresh_from_db()
    assert reward.issued_count == 0


def test_points_for_amount_in_steps_within_bounds(program, member):
    credit = RewardFactory(
        program=program,
        kind=Reward.Kind.POINTS_FOR_AMOUNT,
        cost_points=None,
        value=Decimal("0.01"),
        points_step=100,
        points_min=100,
        points_max=800,
    )
    coupon = redeem(program, member, credit, points=300).redemption
    assert (coupon.points, coupon.value) == (300, Decimal("3.0000"))
    assert redeem(program, member, credit).redemption.points == 100  # default: the minimum
    for bad in (150, 0, 900, -100):
        with pytest.raises(errors.InvalidInput):
            redeem(program, member, credit, points=bad)
    assert balance(member) == 600


def test_fixed_cost_reward_refuses_another_amount(program, member, reward):
    with pytest.raises(errors.InvalidInput):
        redeem(program, member, reward, points=100)


def test_blocked_member_and_other_program(program, member, reward):
    foreign = RewardFactory()
    with pytest.raises(RewardNotFound):
        redeem(program, member, foreign)
    Member.objects.filter(pk=member.pk).update(status="blocked")
    with pytest.raises(errors.MemberBlocked):
        redeem(program, member, reward)


def test_idempotent_redeem(program, member, reward):
    first = redeem(program, member, reward, idempotency_key="r-1")
    again = redeem(program, member, reward, idempotency_key="r-1")
    assert again.replayed
    assert again.redemption.pk == first.redemption.pk
    assert balance(member) == 500
    other = RewardFactory(program=program, cost_points=100)
    with pytest.raises(errors.IdempotencyConflict):
        redeem(program, member, other, idempotency_key="r-1")


def test_use_records_the_order_and_refuses_a_second_use(program, member, reward):
    coupon = redeem(program, member, reward).redemption
    used = services.redemption_use(program=program, code=coupon.code.lower(), order_id="A-1", now=NOW)
    assert (used.status, used.order_id, used.used_at) == ("used", "A-1", NOW)
    with pytest.raises(CouponAlreadyUsed):
        services.redemption_use(program=program, code=coupon.code, order_id="A-2", now=NOW)
    with pytest.raises(CouponAlreadyUsed):
        services.redemption_cancel(program=program, code=coupon.code, now=NOW)
    with pytest.raises(errors.InvalidInput):
        services.redemption_use(program=program, code=coupon.code, order_id=" ", now=NOW)


def test_unknown_and_foreign_codes(program, member, reward):
    coupon = redeem(program, member, reward).redemption
    with pytest.raises(CouponNotFound):
        services.redemption_use(program=ProgramFactory(), code=coupon.code, order_id="A", now=NOW)
    with pytest.raises(CouponNotFound):
        services.redemption_use(program=program, code="nonsense", order_id="A", now=NOW)


def test_cancel_gives_the_points_back_with_their_original_expiry(program, member, reward):
    lot_expiry = LedgerEntry.objects.get(member=member, kind="earn").expires_at
    coupon = redeem(program, member, reward).redemption
    cancelled = services.redemption_cancel(program=program, code=coupon.code, now=NOW + DAY)
    assert cancelled.status == "cancelled"
    assert cancelled.refund_entry.points == 500
    assert cancelled.refund_entry.expires_at == lot_expiry
    assert balance(member) == 1000
    with pytest.raises(CouponNotUsable):
        services.redemption_cancel(program=program, code=coupon.code, now=NOW)
    with pytest.raises(CouponNotUsable):
        services.redemption_use(program=program, code=coupon.code, order_id="A", now=NOW)
    assert not list(ledger_problems())


def test_coupon_expiry_is_the_end_of_a_local_day(program, member):
    reward = RewardFactory(program=program, valid_days=30)
    coupon = redeem(program, member, reward).redemption
    assert coupon.expires_at == program.start_of_day(NOW.date() + dt.timedelta(days=31))
    with pytest.raises(CouponNotUsable) as info:
        services.redemption_use(program=program, code=coupon.code, order_id="late", now=coupon.expires_at)
    assert info.value.details["status"] == "expired"


@pytest.mark.parametrize("refund", [True, False])
def test_expiry_job_follows_the_program_policy_and_is_idempotent(program, member, refund):
    RewardSettings.objects.create(program=program, refund_expired_coupons=refund)
    reward = RewardFactory(program=program, valid_days=1, stock=5)
    coupon = redeem(program, member, reward).redemption
    later = coupon.expires_at + dt.timedelta(seconds=1)
    first = services.coupons_expire(now=later)
    assert (first.coupons, first.refunded) == (1, 1 if refund else 0)
    coupon.refresh_from_db()
    assert coupon.status == "expired"
    assert balance(member) == (1000 if refund else 500)
    reward.refresh_from_db()
    assert reward.issued_count == 0
    assert services.coupons_expire(now=later).coupons == 0
    assert balance(member) == (1000 if refund else 500)
    assert not list(ledger_problems())


def test_expiry_job_leaves_valid_and_used_coupons(program, member):
    reward = RewardFactory(program=program, valid_days=1, cost_points=100)
    used = redeem(program, member, reward).redemption
    services.redemption_use(program=program, code=used.code, order_id="A", now=NOW)
    valid = redeem(program, member, reward).redemption
    assert services.coupons_expire(now=NOW + DAY).coupons == 0
    valid.refresh_from_db()
    assert valid.status == "issued"


def test_reward_validation(program):
    with pytest.raises(errors.InvalidInput) as info:
        services.reward_create(program=program, name="Bad", kind="percent_off", value=Decimal(150), cost_points=10)
    assert "value" in info.value.details["fields"]
    with pytest.raises(errors.InvalidInput) as info:
        services.reward_create(program=program, name="Bad", kind="free_product", cost_points=10)
    assert "sku" in info.value.details["fields"]
    with pytest.raises(errors.InvalidInput) as info:
        services.reward_create(program=program, name="Bad", kind="points_for_amount", value=Decimal("0.01"))
    assert {"points_step", "points_min"} <= set(info.value.details["fields"])
    ok = services.reward_create(program=program, name="Free mug", kind="free_product", sku="MUG", cost_points=300)
    assert ok.pk


def test_expire_coupons_command_and_task(program, member):
    from django.core.management import call_command

    from rewards.tasks import expire_coupons_task

    reward = RewardFactory(program=program, valid_days=0, cost_points=100)
    first = redeem(program, member, reward).redemption
    later = (first.expires_at + DAY).isoformat()
    out = io.StringIO()
    call_command("expire_coupons", "--now", later, stdout=out)
    assert out.getvalue().startswith("1 coupons expired, 1 refunded (100 points)")
    assert expire_coupons_task.delay(now=later).get() == {"coupons": 0, "refunded": 0, "points": 0}


def test_a_gift_of_points_as_money_off_is_worth_the_minimum_points(program, member):
    credit = RewardFactory(
        program=program,
        kind=Reward.Kind.POINTS_FOR_AMOUNT,
        cost_points=None,
        value=Decimal("0.01"),
        points_step=100,
        points_min=300,
        points_max=800,
    )
    gift = services.reward_gift(program=program, member=member, reward=credit, reason="Welcome", idempotency_key="g")
    assert (gift.points, gift.value) == (0, Decimal("3.0000"))
    assert balance(member) == 1000


def test_a_gift_of_points_as_money_off_without_a_minimum_is_worth_one_step(program, member):
    credit = RewardFactory(
        program=program,
        kind=Reward.Kind.POINTS_FOR_AMOUNT,
        cost_points=None,
        value=Decimal("0.05"),
        points_step=50,
        points_min=0,
    )
    gift = services.reward_gift(program=program, member=member, reward=credit, reason="Welcome", idempotency_key="g")
    assert gift.value == Decimal("2.5000")


def test_a_gift_coupon_spends_nothing_and_cancels_without_a_refund(program, member):
    reward = RewardFactory(program=program, stock=2, valid_days=1)
    gift = services.reward_gift(program=program, member=member, reward=reward, reason="Win-back", idempotency_key="g-1")
    again = services.reward_gift(
        program=program, member=member, reward=reward, reason="Win-back", idempotency_key="g-1"
    )
    assert again.pk == gift.pk
    assert (gift.points, gift.entry_id) == (0, None)
    assert balance(member) == 1000
    services.redemption_cancel(program=program, code=gift.code, now=NOW)
    gift.refresh_from_db()
    assert (gift.status, gift.refund_entry_id) == ("cancelled", None)
    assert balance(member) == 1000
    other = services.reward_gift(program=program, member=member, reward=reward, reason="x", idempotency_key="g-2")
    assert services.coupons_expire(now=other.expires_at).coupons == 1
    assert balance(member) == 1000
    assert not list(ledger_problems())


def test_a_refusal_found_after_the_writes_undoes_them_and_the_callers_transaction_goes_on(
    program, member, reward, monkeypatch
):
    from django.db import transaction

    monkeypatch.setattr(services, "_take_stock", lambda reward: False)
    Reward.objects.filter(pk=reward.pk).update(stock=3)
    before = balance(member)
    entries = LedgerEntry.objects.count()
    with transaction.atomic():  # a caller's transaction (the admin's, a task's)
        with pytest.raises(RewardUnavailable):
            redeem(program, member, reward)
        # Its own block (a savepoint here) undid the ledger entry and the coupon.
        assert (Redemption.objects.count(), LedgerEntry.objects.count()) == (0, entries)
        assert balance(member) == before
    assert (Redemption.objects.count(), LedgerEntry.objects.count()) == (0, entries)


def test_a_joined_redemption_sets_no_savepoint_and_its_refusal_is_the_callers_to_roll_back(
    program, member, reward, monkeypatch
):
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        redeem(program, member, reward, join_caller=True)
    # The caller's own block is a savepoint inside the test's transaction: those two only.
    savepoints = [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" in q["sql"]]
    assert (len(savepoints), savepoints[0], savepoints[-1]) == (
        2,
        ctx.captured_queries[0]["sql"],
        ctx.captured_queries[-1]["sql"],
    )
    monkeypatch.setattr(services, "_take_stock", lambda reward: False)
    Reward.objects.filter(pk=reward.pk).update(stock=3)
    reward.refresh_from_db()
    entries = LedgerEntry.objects.count()
    with pytest.raises(RewardUnavailable), transaction.atomic():  # the caller rolls back whole
        redeem(program, member, reward, join_caller=True)
    assert (Redemption.objects.count(), LedgerEntry.objects.count()) == (1, entries)


def test_joining_without_an_open_transaction_runs_in_a_transaction_of_its_own():
    from django.db import connection, transaction

    from loyalty.services.transactions import atomic_or_join

    assert isinstance(atomic_or_join(join=False), transaction.Atomic)
    with transaction.atomic():
        assert not isinstance(atomic_or_join(join=True), transaction.Atomic)
    if not connection.in_atomic_block:  # outside the test's transaction (a transactional test)
        assert isinstance(atomic_or_join(join=True), transaction.Atomic)
