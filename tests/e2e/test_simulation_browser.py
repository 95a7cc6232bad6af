"""Simulation in a real browser (Debian's Chromium): the preview explains each rule ("x2" that
stacks is said to give 3x), a stored activity's "Why this earned this" page, and the Simulate
page with its chart and CSV. Screenshots at 1440x900 in the test's tmp_path (and
SIMULATION_SHOTS when set)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from loyalty.models import Activity
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.workflows.factories import EarningRuleFactory
from workflows import services

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def browser_page(live_server, monkeypatch, tmp_path):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("manager", "manager@example.com", "manager-pass-1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900}, timezone_id="UTC", accept_downloads=True)
        page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "manager")
        page.fill("#id_password", "manager-pass-1")
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")
        yield page
        browser.close()


def shot(page, tmp_path, name):
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("SIMULATION_SHOTS"):
        Path(os.environ["SIMULATION_SHOTS"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(os.environ["SIMULATION_SHOTS"]) / name)


@pytest.fixture
def shop():
    program = ProgramFactory(name="Shop", slug="shop", earn_rate=1, point_value=Decimal("0.01"), expiry_days=None)
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None, priority=1)
    EarningRuleFactory(program=program, name="Double points weekend", kind="per_amount", points=None, multiplier=2)
    EarningRuleFactory(program=program, name="Shop visit", points=15, channel="pos", cap_per_day=20)
    EarningRuleFactory(program=program, name="Big basket", points=40, min_amount=Decimal("60"))
    member = MemberFactory(program=program, external_id="c-1")
    now = timezone.now()
    for day in range(1, 6):
        services.activity_report(
            program=program,
            member=member,
            type="purchase",
            occurred_at=now - dt.timedelta(days=day),
            order_id=f"o{day}",
            amount=Decimal(10 + 15 * day),
            channel="online",
        )
    return program


def test_preview_explain_and_simulate(browser_page, live_server, shop, tmp_path):
    from playwright.sync_api import expect

    page = browser_page
    page.goto(f"{live_server.url}/admin/workflows/earningrule/")
    page.get_by_role("link", name="Preview an order").click()
    page.select_option("#id_program", str(shop.pk))
    page.fill("#id_member", "c-1")
    page.fill("#id_amount", "10.00")
    page.select_option("#id_channel", "online")
    page.get_by_role("button", name="Preview").click()
    explanation = page.locator("#explanation")
    expect(explanation).to_contain_text("channel is online, the rule needs pos")
    expect(explanation).to_contain_text("amount 10.00 below minimum 60.00")
    expect(explanation).to_contain_text("gives 20 more: 30 in all (3x the base)")
    shot(page, tmp_path, "simulation_preview_explain.png")

    activity = Activity.objects.filter(program=shop, order_id="o3").get()
    page.goto(f"{live_server.url}/admin/loyalty/activity/{activity.pk}/change/")
    page.get_by_role("link", name="Why this earned this").click()
    expect(page.locator("#content")).to_contain_text("It earned 165 points")
    expect(page.locator("#explanation")).to_contain_text("fired")
    shot(page, tmp_path, "simulation_stored_explain.png")

    page.goto(f"{live_server.url}/admin/workflows/earningrule/")
    page.get_by_role("link", name="Simulate").click()
    page.select_option("#id_program", str(shop.pk))
    page.fill("#id_days", "7")
    page.get_by_role("button", name="Simulate").click()
    expect(page.locator("#simulation-result")).to_contain_text("5 activities")
    expect(page.locator("#sim-points")).to_have_text("905")
    expect(page.locator("#simulation-result img")).to_be_visible()
    shot(page, tmp_path, "simulation_replay.png")
    with page.expect_download() as info:
        page.locator("#download-csv").click()
    text = Path(info.value.path()).read_text()
    assert text.splitlines()[0] == "section,key,simulated,live,difference"
    assert "total,points,905,905,0" in text
