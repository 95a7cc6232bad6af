"""The rules of the ledger (docs/architecture.md), one behaviour per test, against real PostgreSQL."""

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from loyalty import errors, services
from loyalty.models import Activity, Allocation, IdempotencyRecord, LedgerEntry, Member
from loyalty.selectors import ledger_problems
from loyalty.signals import member_enrolled, points_posted

from .factories import MemberFactory, ProgramFactory, PurchaseFactory

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
T0 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def earn(member, points, *, at=T0, **kwargs):
    return services.points_earn(
        program=member.program, member_id=member.id, points=points, occurred_at=at, now=kwargs.pop("now", at), **kwargs
    )


def balance(member):
    member.refresh_from_db()
    return {
        "available": member.available,
        "pending": member.pending,
        "lifetime_earned": member.lifetime_earned,
        "redeemed": member.redeemed,
        "expired": member.expired,
    }


def assert_consistent():
    assert list(ledger_problems()) == []


def entry_count():
    return LedgerEntry.objects.count()


# --- earning --------------------------------------------------------------------------------


def test_earn_credits_a_lot_that_expires_at_local_midnight_after_the_expiry_days(member):
    result = earn(member, 100)

    lot = result.entries[0]
    assert lot.points == lot.remaining == 100
    # Program: Europe/Paris, 365 days. 2026-03-10 + 365 days = 2027-03-10, valid through that day.
    assert lot.expires_at == dt.datetime(2027, 3, 11, 0, 0, tzinfo=PARIS)
    assert result.balance.available == 100
    assert balance(member)["lifetime_earned"] == 100
    assert_consistent()


def test_expiry_day_is_counted_in_the_program_timezone(db):
    program = ProgramFactory(timezone="Pacific/Auckland", expiry_days=1)
    member = MemberFactory(program=program)
    # 2026-03-10 13:00 UTC is already 2026-03-11 02:00 in Auckland (UTC+13).
    result = earn(member, 10, at=dt.datetime(2026, 3, 10, 13, 0, tzinfo=dt.UTC))

    auckland = zoneinfo.ZoneInfo("Pacific/Auckland")
    assert result.entries[0].expires_at == dt.datetime(2026, 3, 13, 0, 0, tzinfo=auckland)


def test_points_never_expire_when_the_program_has_no_expiry(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=None))
    lot = earn(member, 10).entries[0]
    assert lot.expires_at is None


def test_earn_is_pending_until_the_return_window_passes(db):
    member = MemberFactory(program=ProgramFactory(pending_days=14))
    result = earn(member, 50)

    assert result.balance.pending == 50
    assert result.balance.available == 0
    assert result.entries[0].available_at == T0 + dt.timedelta(days=14)
    assert result.entries[0].released_at is None


def test_points_are_dated_by_the_activity_not_by_the_report(db):
    member = MemberFactory(program=ProgramFactory(pending_days=14))
    occurred = T0 - dt.timedelta(days=20)  # reported 20 days late: the window has passed
    result = earn(member, 50, at=occurred, now=T0)

    assert result.balance.available == 50
    assert result.entries[0].occurred_at == occurred
    assert result.entries[0].expires_at == dt.datetime(2027, 2, 19, 0, 0, tzinfo=PARIS)


@pytest.mark.parametrize("points", [0, -5, 10_000_001, 2.5, "10", True, None])
def test_earn_refuses_zero_negative_huge_or_non_integer_points(member, points):
    with pytest.raises(errors.InvalidPoints):
        earn(member, points)
    assert entry_count() == 0


def test_earn_refuses_an_unknown_member(program):
    with pytest.raises(errors.MemberNotFound):
        services.points_earn(program=program, member_id=999_999, points=10)
    assert entry_count() == 0


def test_earn_refuses_a_member_of_another_program(member):
    other_program = ProgramFactory()
    with pytest.raises(errors.MemberNotFound, match="does not belong"):
        services.points_earn(program=other_program, member_id=member.id, points=10)
    assert entry_count() == 0
    assert balance(member)["available"] == 0


def test_blocked_member_cannot_earn(member):
    services.member_set_status(member=member, status=Member.Status.BLOCKED)
    with pytest.raises(errors.MemberBlocked):
        earn(member, 10)
    assert entry_count() == 0


def test_earn_refuses_a_naive_time(member):
    with pytest.raises(errors.InvalidInput):
        earn(member, 10, at=dt.datetime(2026, 1, 1, 12, 0))


# --- redeeming ------------------------------------------------------------------------------


def test_redeem_consumes_the_first_expiring_lots_first(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=30))
    late = earn(member, 50, at=T0).entries[0]  # expires later
    early = earn(member, 30, at=T0 - dt.timedelta(days=10), now=T0).entries[0]  # expires first

    result = services.points_redeem(program=member.program, member_id=member.id, points=40, now=T0)

    allocations = {a.lot_id: a.points for a in Allocation.objects.filter(debit=result.entries[0])}
    assert allocations == {early.id: 30, late.id: 10}
    assert result.balance.available == 40
    assert result.balance.redeemed == 40
    assert_consistent()


def test_redeem_refuses_when_points_are_short_and_writes_nothing(member):
    earn(member, 100)
    before = entry_count()

    with pytest.raises(errors.InsufficientPoints) as exc:
        services.points_redeem(program=member.program, member_id=member.id, points=101, now=T0)

    assert exc.value.details["available"] == 100
    assert entry_count() == before
    assert balance(member)["available"] == 100


def test_pending_points_cannot_be_spent_before_release(db):
    member = MemberFactory(program=ProgramFactory(pending_days=14))
    earn(member, 100)

    with pytest.raises(errors.InsufficientPoints):
        services.points_redeem(program=member.program, member_id=member.id, points=10, now=T0 + dt.timedelta(days=13))

    result = services.points_redeem(
        program=member.program, member_id=member.id, points=10, now=T0 + dt.timedelta(days=14)
    )
    assert result.balance.available == 90
    assert result.balance.pending == 0
    assert_consistent()


def test_expired_points_cannot_be_spent_even_before_the_expiry_job_runs(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=30))
    earn(member, 100)
    after_expiry = T0 + dt.timedelta(days=40)

    with pytest.raises(errors.InsufficientPoints):
        services.points_redeem(program=member.program, member_id=member.id, points=10, now=after_expiry)

    # The refused redemption rolled back the inline expiry too; the job does it.
    assert balance(member)["available"] == 100
    services.points_expire(now=after_expiry)
    assert balance(member) == {"available": 0, "pending": 0, "lifetime_earned": 100, "redeemed": 0, "expired": 100}
    assert_consistent()


def test_blocked_member_cannot_redeem(member):
    earn(member, 100)
    services.member_set_status(member=member, status=Member.Status.BLOCKED)
    with pytest.raises(errors.MemberBlocked):
        services.points_redeem(program=member.program, member_id=member.id, points=10, now=T0)


# --- adjustments and debt ---------------------------------------------------------------------


def test_adjustment_requires_a_reason(member, staff):
    for reason in ("", "   "):
        with pytest.raises(errors.ReasonRequired):
            services.points_adjust(program=member.program, member_id=member.id, points=10, reason=reason, actor=staff)
    assert entry_count() == 0


def test_adjustment_requires_the_acting_staff_user(member):
    with pytest.raises(errors.InvalidInput):
        services.points_adjust(program=member.program, member_id=member.id, points=10, reason="goodwill", actor=None)


def test_adjustment_records_who_made_it(member, staff):
    result = services.points_adjust(
        program=member.program, member_id=member.id, points=25, reason="goodwill", actor=staff, now=T0
    )
    entry = LedgerEntry.objects.get(id=result.entries[0].id)
    assert entry.created_by == staff
    assert entry.kind == LedgerEntry.Kind.ADJUST
    assert result.balance.available == 25
    assert result.balance.lifetime_earned == 0  # goodwill is not earned


def test_blocked_member_can_still_be_adjusted_by_staff(member, staff):
    services.member_set_status(member=member, status=Member.Status.BLOCKED)
    result = services.points_adjust(program=member.program, member_id=member.id, points=-5, reason="fraud", actor=staff)
    assert result.balance.available == -5


def test_negative_adjustment_may_leave_a_debt_which_the_next_credit_pays_first(member, staff):
    earn(member, 30)
    debit = services.points_adjust(
        program=member.program, member_id=member.id, points=-50, reason="chargeback", actor=staff, now=T0
    ).entries[0]
    assert debit.remaining == -20
    assert balance(member)["available"] == -20

    lot = earn(member, 100, at=T0 + dt.timedelta(days=1)).entries[0]

    assert lot.remaining == 80
    assert Allocation.objects.get(lot_id=lot.id).debit_id == debit.id
    assert LedgerEntry.objects.get(id=debit.id).remaining == 0
    assert balance(member)["available"] == 80
    assert_consistent()


def test_a_pending_credit_pays_the_debt_and_keeps_the_rest_pending(db, staff):
    member = MemberFactory(program=ProgramFactory(pending_days=14))
    services.points_adjust(program=member.program, member_id=member.id, points=-20, reason="x", actor=staff, now=T0)

    earn(member, 50)

    assert balance(member)["available"] == 0
    assert balance(member)["pending"] == 30
    assert_consistent()


def test_redeem_never_creates_a_debt(member, staff):
    services.points_adjust(program=member.program, member_id=member.id, points=-10, reason="x", actor=staff, now=T0)
    with pytest.raises(errors.InsufficientPoints):
        services.points_redeem(program=member.program, member_id=member.id, points=1, now=T0)


# --- refunds ----------------------------------------------------------------------------------


def purchase(member, amount, points, *, at=T0, order_id=None):
    activity = PurchaseFactory(
        member=member,
        program=member.program,
        amount=Decimal(amount),
        occurred_at=at,
        **({"order_id": order_id} if order_id else {}),
    )
    services.points_earn(program=member.program, member_id=member.id, points=points, activity=activity, now=at)
    return activity


def refund(member, order, amount, **kwargs):
    return services.points_reverse_order(
        program=member.program,
        order_id=order.order_id,
        amount=Decimal(amount),
        now=kwargs.pop("now", T0 + dt.timedelta(days=1)),
        **kwargs,
    )


def test_refund_reverses_points_in_proportion_to_the_refunded_amount(member):
    order = purchase(member, "200.00", 200)

    result = refund(member, order, "50.00")

    assert result.entries[0].points == -50
    assert result.entries[0].kind == LedgerEntry.Kind.REVERSAL
    assert result.balance.available == 150
    assert result.balance.lifetime_earned == 150
    assert Activity.objects.filter(type="refund", order_id=order.order_id).count() == 1
    assert_consistent()


def test_partial_refunds_add_up_to_exactly_the_order_points(member):
    order = purchase(member, "100.00", 100)
    for _ in range(3):
        refund(member, order, "33.33")
    refund(member, order, "0.01")

    reversed_points = -sum(
        LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.REVERSAL).values_list("points", flat=True)
    )
    assert reversed_points == 100
    assert balance(member)["available"] == 0


def test_refund_larger_than_the_order_is_refused_and_writes_nothing(member):
    order = purchase(member, "100.00", 100)
    refund(member, order, "60.00")
    before = entry_count()

    with pytest.raises(errors.RefundExceedsOrder):
        refund(member, order, "40.01")

    assert entry_count() == before
    assert Activity.objects.filter(type="refund").count() == 1


def test_refund_of_an_unknown_order_is_refused(member):
    with pytest.raises(errors.OrderNotFound):
        services.points_reverse_order(program=member.program, order_id="nope", amount=Decimal(10))


@pytest.mark.parametrize("amount", ["0", "-5", "NaN", "abc"])
def test_refund_refuses_a_non_positive_or_invalid_amount(member, amount):
    order = purchase(member, "100.00", 100)
    with pytest.raises(errors.InvalidInput):
        services.points_reverse_order(program=member.program, order_id=order.order_id, amount=amount)


def test_refund_of_an_order_whose_points_were_spent_leaves_a_debt(member):
    order = purchase(member, "100.00", 100)
    services.points_redeem(program=member.program, member_id=member.id, points=100, now=T0)

    result = refund(member, order, "100.00")

    assert result.entries[0].remaining == -100
    assert result.balance.available == -100
    assert result.balance.lifetime_earned == 0
    assert_consistent()


def test_refund_takes_the_orders_own_pending_points_first(db):
    member = MemberFactory(program=ProgramFactory(pending_days=14))
    old = earn(member, 40, at=T0 - dt.timedelta(days=30), now=T0 - dt.timedelta(days=30)).entries[0]
    services.points_release(now=T0)
    order = purchase(member, "50.00", 50)

    result = refund(member, order, "50.00", now=T0 + dt.timedelta(days=1))

    allocations = list(Allocation.objects.filter(debit=result.entries[0]).values_list("lot__activity_id", "points"))
    assert allocations == [(order.id, 50)]
    assert LedgerEntry.objects.get(id=old.id).remaining == 40
    assert balance(member)["pending"] == 0
    assert balance(member)["available"] == 40
    assert_consistent()


def test_refund_works_on_a_blocked_member(member):
    order = purchase(member, "100.00", 100)
    services.member_set_status(member=member, status=Member.Status.BLOCKED)
    assert refund(member, order, "100.00").balance.available == 0


# --- cancelling a redemption and transfers keep expiry dates ------------------------------------


def test_cancelled_redemption_gives_the_points_back_with_their_original_expiry(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=30))
    first = earn(member, 30, at=T0 - dt.timedelta(days=10), now=T0).entries[0]
    second = earn(member, 50, at=T0).entries[0]
    redemption = services.points_redeem(program=member.program, member_id=member.id, points=60, now=T0).entries[0]

    result = services.points_restore(program=member.program, entry_id=redemption.id, now=T0 + dt.timedelta(days=1))

    restored = sorted((e.expires_at, e.points) for e in result.entries)
    assert restored == [(first.expires_at, 30), (second.expires_at, 30)]
    assert all(e.kind == LedgerEntry.Kind.REVERSAL and e.source_entry_id == redemption.id for e in result.entries)
    assert result.balance.available == 80
    assert result.balance.redeemed == 0
    assert_consistent()


def test_a_redemption_is_given_back_only_once(member):
    earn(member, 100)
    redemption = services.points_redeem(program=member.program, member_id=member.id, points=60, now=T0).entries[0]
    services.points_restore(program=member.program, entry_id=redemption.id, now=T0)

    with pytest.raises(errors.AlreadyReversed):
        services.points_restore(program=member.program, entry_id=redemption.id, now=T0)
    assert balance(member)["available"] == 100


def test_points_given_back_after_their_expiry_date_expire_at_once(db):
    member = MemberFactory(program=ProgramFactory(expiry_days=30))
    earn(member, 100)
    redemption = services.points_redeem(program=member.program, member_id=member.id, points=100, now=T0).entries[0]
    later = T0 + dt.timedelta(days=60)

    services.points_restore(program=member.program, entry_id=redemption.id, now=later)
    services.points_expire(now=later)

    assert balance(member) == {"available": 0, "pending": 0, "lifetime_earned": 100, "redeemed": 0, "expired": 100}
    assert_consistent()


def test_restore_refuses_an_entry_that_is_not_a_redemption(member):
    lot = earn(member, 10).entries[0]
    with pytest.raises(errors.EntryNotFound):
        services.points_restore(program=member.program, entry_id=lot.id)


def test_transfer_keeps_the_points_original_expiry_dates(db):
    program = ProgramFactory(expiry_days=30)
    sender, receiver = MemberFactory(program=program), MemberFactory(program=program)
    early = earn(sender, 20, at=T0 - dt.timedelta(days=5), now=T0).entries[0]
    late = earn(sender, 50, at=T0).entries[0]

    result = services.points_transfer(
        program=program, from_member_id=sender.id, to_member_id=receiver.id, points=30, now=T0
    )

    received = sorted((e.expires_at, e.points) for e in result.entries if e.member_id == receiver.id)
    assert received == [(early.expires_at, 20), (late.expires_at, 10)]
    assert result.balance.available == 40
    assert result.other_balances[receiver.id].available == 30
    assert_consistent()


def test_transfer_refuses_more_than_the_sender_has(db):
    program = ProgramFactory()
    sender, receiver = MemberFactory(program=program), MemberFactory(program=program)
    earn(sender, 10)
    with pytest.raises(errors.InsufficientPoints):
        services.points_transfer(program=program, from_member_id=sender.id, to_member_id=receiver.id, points=11, now=T0)
    assert balance(receiver)["available"] == 0


def test_transfer_refuses_the_same_member_a_blocked_member_and_another_program(db):
    program = ProgramFactory()
    sender, receiver = MemberFactory(program=program), MemberFactory(program=program)
    stranger = MemberFactory()
    earn(sender, 100)
    with pytest.raises(errors.InvalidInput):
        services.points_transfer(program=program, from_member_id=sender.id, to_member_id=sender.id, points=1)
    with pytest.raises(errors.MemberNotFound):
        services.points_transfer(program=program, from_member_id=sender.id, to_member_id=stranger.id, points=1)
    services.member_set_status(member=receiver, status=Member.Status.BLOCKED)
    with pytest.raises(errors.MemberBlocked):
        services.points_transfer(program=program, from_member_id=sender.id, to_member_id=receiver.id, points=1)
    assert balance(sender)["available"] == 100


# --- idempotency -----------------------------------------------------------------------------


def test_same_key_and_same_request_returns_the_first_result_and_posts_nothing(member):
    first = earn(member, 10, idempotency_key="order-1")
    again = earn(member, 10, idempotency_key="order-1", now=T0 + dt.timedelta(hours=1))

    assert again.replayed
    assert [e.id for e in again.entries] == [e.id for e in first.entries]
    assert entry_count() == 1
    assert balance(member)["available"] == 10


def test_same_key_with_a_different_request_is_refused(member):
    earn(member, 10, idempotency_key="order-1")
    with pytest.raises(errors.IdempotencyConflict):
        earn(member, 11, idempotency_key="order-1")
    with pytest.raises(errors.IdempotencyConflict):
        services.points_redeem(program=member.program, member_id=member.id, points=10, idempotency_key="order-1")
    assert entry_count() == 1


def test_idempotency_keys_are_unique_per_program(db):
    a, b = MemberFactory(), MemberFactory()
    earn(a, 10, idempotency_key="same")
    earn(b, 10, idempotency_key="same")
    assert IdempotencyRecord.objects.filter(key="same").count() == 2


def test_a_refused_post_does_not_burn_its_idempotency_key(member):
    with pytest.raises(errors.InsufficientPoints):
        services.points_redeem(program=member.program, member_id=member.id, points=10, idempotency_key="k", now=T0)
    earn(member, 10)
    result = services.points_redeem(program=member.program, member_id=member.id, points=10, idempotency_key="k", now=T0)
    assert not result.replayed
    assert result.balance.available == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_malformed_idempotency_keys_are_refused(member, key):
    with pytest.raises(errors.InvalidInput):
        earn(member, 10, idempotency_key=key)


def test_refund_with_a_repeated_key_is_posted_once(member):
    order = purchase(member, "100.00", 100)
    refund(member, order, "50.00", idempotency_key="refund-1")
    replay = refund(member, order, "50.00", idempotency_key="refund-1")

    assert replay.replayed
    assert Activity.objects.filter(type="refund").count() == 1
    assert balance(member)["available"] == 50


# --- the one writer, signals, enrolment --------------------------------------------------------


def test_ledger_entries_cannot_be_changed_or_deleted_in_the_database(member):
    lot = earn(member, 10).entries[0]
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(id=lot.id).update(points=1_000)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM loyalty_ledgerentry WHERE id = %s", [lot.id])


def test_points_posted_is_sent_after_commit(member, django_capture_on_commit_callbacks):
    received = []

    def receiver(**kwargs):
        received.append((kwargs["member_id"], kwargs["balance"].available))

    points_posted.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            earn(member, 10)
        assert received == []
        for callback in callbacks:
            callback()
    finally:
        points_posted.disconnect(receiver)
    assert received == [(member.id, 10)]


def test_enrol_is_idempotent_on_the_external_id_and_announces_new_members(program, django_capture_on_commit_callbacks):
    enrolled = []

    def receiver(**kwargs):
        enrolled.append(kwargs["member"].id)

    member_enrolled.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            first, created = services.member_enrol(program=program, external_id="shop-42", email="A@Example.com")
            again, created_again = services.member_enrol(program=program, external_id="shop-42")
    finally:
        member_enrolled.disconnect(receiver)
    assert created
    assert not created_again
    assert first.id == again.id
    assert first.email == "a@example.com"
    assert enrolled == [first.id]


def test_enrol_refuses_an_invalid_email(program):
    with pytest.raises(errors.InvalidInput) as exc:
        services.member_enrol(program=program, external_id="x", email="not-an-email")
    assert "email" in exc.value.details["fields"]
    assert not Member.objects.exists()


def test_every_kind_sign_is_enforced_by_the_database(member):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, occurred_at,"
            " reason, reference) VALUES (%s, %s, 'redeem', 10, 10, now(), now(), '', '')",
            [member.program_id, member.id],
        )


def test_results_report_the_balance_after_the_post(member):
    result = earn(member, 10)
    assert result.balance == services.Balance(available=10, pending=0, lifetime_earned=10, redeemed=0, expired=0)
    assert result.points == 10
    assert timezone.is_aware(result.entries[0].created_at)


def test_transfer_by_staff_records_who_made_it(db, staff):
    program = ProgramFactory()
    sender, receiver = MemberFactory(program=program), MemberFactory(program=program)
    earn(sender, 10)
    result = services.points_transfer(
        program=program, from_member_id=sender.id, to_member_id=receiver.id, points=5, actor=staff, now=T0
    )
    assert {LedgerEntry.objects.get(id=e.id).created_by_id for e in result.entries} == {staff.id}


def test_member_update_changes_only_profile_fields_and_keeps_balances(member):
    stale = Member.objects.get(id=member.id)  # read before the post, like an open admin form
    earn(member, 10)

    services.member_update(member=stale, email=" New@Example.com ", first_name="Grace")

    member.refresh_from_db()
    assert member.email == "new@example.com"
    assert member.first_name == "Grace"
    assert member.available == 10
    with pytest.raises(errors.InvalidInput):
        services.member_update(member=member, available=1_000)
    with pytest.raises(errors.InvalidInput):
        services.member_update(member=member, email="broken")


def test_member_update_refuses_an_external_id_taken_in_the_program(member, other_member):
    with pytest.raises(errors.Conflict):
        services.member_update(member=member, external_id=other_member.external_id)


def test_bulk_credit_posts_one_lot_per_member_and_pays_debts_first(db, staff):
    program = ProgramFactory()
    a, b, indebted = (MemberFactory(program=program) for _ in range(3))
    services.points_adjust(program=program, member_id=indebted.id, points=-30, reason="x", actor=staff, now=T0)

    count = services.points_credit_bulk(
        program=program,
        credits=[(a.id, 100), (b.id, 5), (indebted.id, 50)],
        reason="Opening balance",
        actor=staff,
        now=T0,
    )

    assert count == 3
    assert balance(a)["available"] == 100
    assert balance(b)["available"] == 5
    assert balance(indebted)["available"] == 20
    assert LedgerEntry.objects.filter(reason="Opening balance", created_by=staff).count() == 3
    assert_consistent()


def test_bulk_credit_refuses_bad_rows_and_writes_nothing(db, staff):
    program = ProgramFactory()
    a = MemberFactory(program=program)
    stranger = MemberFactory()
    for credits in ([(a.id, 0)], [(a.id, 5), (a.id, 6)], [(a.id, 5), (stranger.id, 5)]):
        with pytest.raises(errors.LoyaltyError):
            services.points_credit_bulk(program=program, credits=credits, reason="Opening balance", actor=staff)
    with pytest.raises(errors.ReasonRequired):
        services.points_credit_bulk(program=program, credits=[(a.id, 5)], reason="", actor=staff)
    assert entry_count() == 0


def test_transfer_with_pending_points_keeps_their_release_and_expiry_dates(db):
    program = ProgramFactory(pending_days=14, expiry_days=30)
    sender, receiver = MemberFactory(program=program), MemberFactory(program=program)
    old = earn(sender, 20, at=T0 - dt.timedelta(days=20), now=T0 - dt.timedelta(days=20)).entries[0]
    fresh = earn(sender, 50, at=T0).entries[0]

    with pytest.raises(errors.InsufficientPoints):
        services.points_transfer(program=program, from_member_id=sender.id, to_member_id=receiver.id, points=70, now=T0)
    result = services.points_transfer(
        program=program, from_member_id=sender.id, to_member_id=receiver.id, points=70, include_pending=True, now=T0
    )

    received = sorted((e.points, e.available_at, e.expires_at) for e in result.entries if e.member_id == receiver.id)
    assert received == [(20, T0, old.expires_at), (50, fresh.available_at, fresh.expires_at)]
    assert result.other_balances[receiver.id].available == 20
    assert result.other_balances[receiver.id].pending == 50
    assert result.balance.pending == 0
    assert_consistent()
