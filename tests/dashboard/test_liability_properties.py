"""The liability roll-forward reconciles to the ledger to the point, for random histories.

Hypothesis draws a history of earns, purchases and refunds, redemptions (some cancelled),
staff adjustments up and down (debts included), transfers and expiry-job runs under a clock that
moves forward by days; the report over the whole history must then find no difference, and
each month's closing must equal the sum of every entry written before that month's end, the
lots held less the debts rebuilt from the allocations at that moment, and, at the end, the
members' cached balances."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import liability
from loyalty import errors, services
from loyalty.models import LedgerEntry, Member
from loyalty.selectors import ledger_problems
from tests.loyalty.factories import MemberFactory, ProgramFactory, PurchaseFactory

T0 = dt.datetime(2025, 11, 20, 10, 0, tzinfo=dt.UTC)

steps = st.lists(
    st.tuples(
        st.sampled_from(["earn", "purchase", "refund", "redeem", "restore", "adjust", "transfer", "expire"]),
        st.integers(0, 2),  # member
        st.integers(-150, 300),  # points
        st.integers(0, 40),  # days before this step
    ),
    min_size=1,
    max_size=25,
)


def _run(program, members, history) -> dt.datetime:
    now = T0
    orders, redemptions = [], []
    for action, who, pts, days in history:
        now += dt.timedelta(days=days, minutes=7)
        member = members[who]
        try:
            if action == "earn" and pts > 0:
                services.points_earn(program=program, member_id=member.pk, points=pts, now=now)
            elif action == "purchase" and pts > 0:
                activity = PurchaseFactory(member=member, occurred_at=now, amount=Decimal(pts))
                services.points_earn(program=program, member_id=member.pk, points=pts, activity=activity, now=now)
                orders.append(activity.order_id)
            elif action == "refund" and orders:
                services.points_reverse_order(
                    program=program, order_id=orders.pop(), amount=Decimal(abs(pts) % 50 + 1), now=now
                )
            elif action == "redeem" and pts > 0:
                available = Member.objects.get(pk=member.pk).available
                if available > 0:
                    result = services.points_redeem(
                        program=program, member_id=member.pk, points=min(pts, available), now=now
                    )
                    redemptions.append(result.entries[0].pk)
            elif action == "restore" and redemptions:
                services.points_restore(program=program, entry_id=redemptions.pop(), now=now)
            elif action == "adjust" and pts != 0:
                services.points_adjust(
                    program=program, member_id=member.pk, points=pts, reason="test", source="test", now=now
                )
            elif action == "transfer" and pts > 0:
                other = members[(who + 1) % len(members)]
                available = Member.objects.get(pk=member.pk).available
                if available > 0:
                    services.points_transfer(
                        program=program,
                        from_member_id=member.pk,
                        to_member_id=other.pk,
                        points=min(pts, available),
                        now=now,
                    )
            elif action == "expire":
                services.points_expire(now=now, program=program)
        except errors.LoyaltyError:
            pass
    return now


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=steps, expiry=st.sampled_from([None, 20, 45]))
def test_the_roll_forward_reconciles_to_the_ledger(history, expiry):
    program = ProgramFactory(expiry_days=expiry, timezone="Europe/Paris", point_value=Decimal("0.01"))
    members = [MemberFactory(program=program) for _ in range(3)]
    last = _run(program, members, history)
    assert list(ledger_problems()) == []
    start = program.local_date(T0)
    end = program.local_date(last)
    now = last + dt.timedelta(minutes=1)

    report = liability.liability_report([program], start, end, now=now)

    assert report.differences == []
    item = report.currencies[0].programs[0]
    for row in item.rows:
        moment = liability.end_moment(program, row.end)
        in_ledger = LedgerEntry.objects.filter(program=program, created_at__lt=moment).aggregate(s=Sum("points"))["s"]
        assert row.closing == (in_ledger or 0)
        rebuilt = liability.aging([program], row.end, now=now, from_history=True)[program.pk]
        assert rebuilt.net == row.closing
    balances = Member.objects.filter(program=program).aggregate(s=Sum("available") + Sum("pending"))["s"]
    assert item.closing == balances
    assert liability.aging([program], end, now=now, from_history=True)[program.pk] == item.aging
