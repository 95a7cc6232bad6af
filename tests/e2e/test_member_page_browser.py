"""The member page in a real browser (Playwright, Debian's Chromium at 1440x900): a manager
reads a member's story, an adjustment above the confirmation threshold asks first, a support
user above their limit gets an approval request instead of a posting, and a second staff
user approves it. Screenshots go to $MEMBER_PAGE_SCREENSHOTS (else the test's tmp_path)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from loyalty.models import AdjustmentRequest, LedgerEntry
from tests.dashboard.member_helpers import member_with_story, role_user

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("MEMBER_PAGE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield browser
        browser.close()


def logged_in(browser, live_server, user):
    page = browser.new_page(viewport={"width": 1440, "height": 900}, timezone_id="UTC")
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pass-word-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    return page


def test_the_member_page_its_guardrails_and_a_second_approval(browser, live_server, shots, program):
    from playwright.sync_api import expect

    manager = role_user("Manager", "maria.manager")
    support = role_user("Support", "sam.support")
    member, _card, coupon, _friend = member_with_story(program, manager)
    url = f"{live_server.url}/admin/dashboard/members/{member.pk}/"

    # A manager reads the member's story.
    page = logged_in(browser, live_server, manager)
    page.goto(url)
    expect(page.locator("#balances")).to_contain_text("available")
    expect(page.locator("#coupons")).to_contain_text(coupon.code)
    expect(page.locator("#orders")).to_contain_text("ORD-1001")
    page.screenshot(path=str(shots / "member-page.png"), full_page=True)

    # The ledger filters without reloading the page (htmx).
    page.select_option("#ledger-block select[name=kind]", "reversal")
    page.click("#ledger-block button[type=submit]")
    expect(page.locator("#ledger-block")).to_contain_text("Refund of order ORD-1001")
    expect(page.locator("#ledger-block")).not_to_contain_text("Reward: Free coffee")

    # -10,000 typed instead of -100: the page asks, with the new balance and the debt.
    page.click("#adjust summary")
    page.fill("#adjust input[name=points]", "-10000")
    page.fill("#adjust input[name=reason]", "Duplicate order")
    page.click("#adjust button[type=submit]")
    confirm = page.locator(".adjust-confirm")
    expect(confirm).to_contain_text("Please confirm this adjustment")
    expect(confirm).to_contain_text("owed")
    page.screenshot(path=str(shots / "adjust-confirm.png"), full_page=True)
    assert not LedgerEntry.objects.filter(member=member, kind="adjust").exists()
    page.click(".adjust-confirm .closelink")  # "No, change it"
    expect(page.locator("#balances")).to_be_visible()
    page.close()

    # A support user asks for more than their limit: a request, nothing posted.
    page = logged_in(browser, live_server, support)
    page.goto(url)
    page.click("#adjust summary")
    page.fill("#adjust input[name=points]", "800")
    page.fill("#adjust input[name=reason]", "Parcel lost by the carrier")
    page.click("#adjust button[type=submit]")
    expect(page.locator(".adjust-confirm")).to_contain_text("your limit of 500")
    page.screenshot(path=str(shots / "support-over-limit.png"), full_page=True)
    page.click(".adjust-confirm input[type=submit]")  # "Send for approval"
    expect(page.locator(".messagelist")).to_contain_text("wait for another staff member's approval")
    expect(page.locator("#requests")).to_contain_text("You asked: another staff member decides")
    page.screenshot(path=str(shots / "support-request-sent.png"), full_page=True)
    assert not LedgerEntry.objects.filter(member=member, kind="adjust").exists()
    page.close()

    # The manager approves it on the approvals page: posted once.
    page = logged_in(browser, live_server, manager)
    page.goto(f"{live_server.url}/admin/dashboard/adjustments/")
    expect(page.locator("body")).to_contain_text("Parcel lost by the carrier")
    page.screenshot(path=str(shots / "approvals.png"), full_page=True)
    page.click("text=Approve and post")
    expect(page.locator(".messagelist")).to_contain_text("approved and posted")
    page.goto(url)
    expect(page.locator("#audit")).to_contain_text("Approved an adjustment")
    page.screenshot(path=str(shots / "member-page-after-approval.png"), full_page=True)
    page.close()

    request = AdjustmentRequest.objects.get(member=member)
    assert (request.status, request.decided_by) == ("approved", manager)
    assert LedgerEntry.objects.filter(member=member, kind="adjust").count() == 1
