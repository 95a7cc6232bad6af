"""Budgets in a real browser (Debian's Chromium): the earning rules' change list and a rule's
page show each budget's use (used / limit, percent, period), and the preview tells why a rule
gives nothing. Screenshots at 1440x900 in BUDGET_SCREENSHOTS or the test's tmp_path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.loyalty.factories import MemberFactory, ProgramFactory
from workflows import services
from workflows.models import ProgramBudget

from ..workflows.factories import EarningRuleFactory

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("BUDGET_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(live_server, monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("manager", "manager@example.com", "manager-pass-1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900}, timezone_id="UTC")
        page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "manager")
        page.fill("#id_password", "manager-pass-1")
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")
        yield page
        browser.close()


def test_the_rule_admin_shows_a_budgets_use(page, live_server, shots):
    from playwright.sync_api import expect

    program = ProgramFactory(name="Coffee Roasters", timezone="Europe/Paris")
    ProgramBudget.objects.create(program=program, budget_per_period=50_000, budget_period="month")
    weekend = EarningRuleFactory(
        program=program,
        name="Double weekend",
        points=40,
        budget_total=1_000,
        budget_per_period=100,
        budget_period="day",
    )
    EarningRuleFactory(program=program, name="Base", points=10, priority=5)
    member = MemberFactory(program=program)
    for i in range(3):
        services.activity_report(
            program=program, member=member, type="purchase", order_id=f"o{i}", amount=10, occurred_at=timezone.now()
        )

    page.goto(f"{live_server.url}/admin/workflows/earningrule/?program__id__exact={program.pk}")
    row = page.locator("#result_list tr", has_text="Double weekend")
    expect(row).to_contain_text("100 / 100 points (100 %), day")
    expect(row).to_contain_text("100 / 1,000 points (10 %), in all")
    page.screenshot(path=str(shots / "budget-rules-list.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/workflows/earningrule/{weekend.pk}/change/")
    budget = page.locator("fieldset", has_text="Budget (points, all members together)")
    expect(budget).to_contain_text("100 / 100 points (100 %), day")
    budget.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "budget-rule-page.png"), full_page=True)

    page.goto(
        f"{live_server.url}/admin/workflows/earningrule/preview/"
        f"?program={program.pk}&member={member.pk}&type=purchase&amount=10"
    )
    expect(page.locator("#preview-budget-notes")).to_contain_text('Budget of rule "Double weekend" used up')
    page.screenshot(path=str(shots / "budget-preview.png"), full_page=True)
