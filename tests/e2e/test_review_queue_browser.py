"""The review queue (docs/fraud.md) in a real browser: Playwright with Debian's Chromium.

Members > Review queue opens on the waiting holds; a reviewer selects one and releases it (its
points become available), selects the other and rejects it with a reason typed on the second
step (its points are reversed). Screenshots (PORTAL_SCREENSHOTS, else the test's tmp dir):
review-queue.png, review-released.png, review-reject-reason.png, review-rejected.png."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from loyalty.models import LedgerEntry, Member, StaffAction
from loyalty.selectors import ledger_problems
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.workflows.factories import EarningRuleFactory
from workflows import fraud, services
from workflows.models import FraudLimits, ReviewHold

from .test_admin_browser import PARIS, browser_page, pytestmark  # noqa: F401  (the shared fixture and marks)


def test_a_reviewer_releases_one_hold_and_rejects_another(browser_page, live_server):  # noqa: F811
    import datetime as dt

    shots = Path(os.environ.get("PORTAL_SCREENSHOTS") or browser_page.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    program = ProgramFactory(name="Bean Club", timezone="Europe/Paris")
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None)
    FraudLimits.objects.create(program=program, is_active=True, max_same_amount_per_day=2)
    fraud.limits_forget()
    lea = MemberFactory(program=program, first_name="Léa", last_name="Martin")
    hugo = MemberFactory(program=program, first_name="Hugo", last_name="Bernard")
    now = dt.datetime.now(PARIS).replace(hour=11, minute=0, second=0, microsecond=0)
    for member, amount in ((lea, "49.90"), (hugo, "120.00")):
        for n in range(3):
            services.activity_report(
                program=program,
                member=member,
                type="purchase",
                order_id=f"A-{member.pk}-{n}",
                amount=Decimal(amount),
                occurred_at=now + dt.timedelta(minutes=n),
                now=now + dt.timedelta(minutes=n),
            )
    lea_hold, hugo_hold = ReviewHold.objects.get(member=lea), ReviewHold.objects.get(member=hugo)
    page = browser_page

    page.goto(f"{live_server.url}/admin/workflows/reviewhold/")
    page.get_by_text("3 purchases of 49.90 today (limit 2)").wait_for(state="visible")
    page.screenshot(path=str(shots / "review-queue.png"), full_page=True)

    page.locator(f"input[name=_selected_action][value='{lea_hold.pk}']").check()
    page.select_option("select[name=action]", "release")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("Released 1 hold: 49 points made available.").wait_for(state="visible")
    page.screenshot(path=str(shots / "review-released.png"), full_page=True)

    page.locator(f"input[name=_selected_action][value='{hugo_hold.pk}']").check()
    page.select_option("select[name=action]", "reject")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("Rejecting takes the held points back").wait_for(state="visible")
    page.get_by_label("Reason").fill("The same 120.00 receipt scanned three times at the till.")
    page.screenshot(path=str(shots / "review-reject-reason.png"), full_page=True)
    page.get_by_role("button", name="Reject and reverse the points").click()
    page.get_by_text("Rejected 1 hold: 120 points reversed.").wait_for(state="visible")
    page.goto(f"{live_server.url}/admin/workflows/reviewhold/?status__exact=rejected")
    page.get_by_text("3 purchases of 120.00 today (limit 2)").wait_for(state="visible")
    page.screenshot(path=str(shots / "review-rejected.png"), full_page=True)

    assert ReviewHold.objects.get(pk=lea_hold.pk).status == "released"
    assert ReviewHold.objects.get(pk=hugo_hold.pk).status == "rejected"
    assert (Member.objects.get(pk=lea.pk).available, Member.objects.get(pk=lea.pk).pending) == (147, 0)
    assert (Member.objects.get(pk=hugo.pk).available, Member.objects.get(pk=hugo.pk).pending) == (240, 0)
    assert LedgerEntry.objects.filter(member=hugo, kind="reversal").get().points == -120
    assert set(StaffAction.objects.values_list("action", flat=True)) == {"hold_release", "hold_reject"}
    assert list(ledger_problems()) == []
