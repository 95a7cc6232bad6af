"""Staff pages driven in a real browser: Playwright with Debian's Chromium (/usr/bin/chromium,
never a downloaded browser). Skipped where Chromium is not installed (`.ci/run` installs it).

What a manager does by hand: open an earning rule of a program that runs in Paris, type a
campaign start with the admin's date and time widgets, save, and read it back; and try to save
a tier whose threshold is below the tier under it."""

from __future__ import annotations

import datetime as dt
import shutil
import zoneinfo
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from tests.loyalty.factories import ProgramFactory
from tests.tiers.factories import TierFactory
from tests.workflows.factories import EarningRuleFactory
from tiers.models import Tier
from workflows.models import EarningRule

CHROMIUM = "/usr/bin/chromium"
PARIS = zoneinfo.ZoneInfo("Europe/Paris")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def browser_page(live_server, monkeypatch, tmp_path):
    """A logged-in staff page in headless Chromium (the browser's clock is in UTC)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's ORM calls are
    # ordinary synchronous calls between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("manager", "manager@example.com", "manager-pass-1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 1000}, timezone_id="UTC")
        page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "manager")
        page.fill("#id_password", "manager-pass-1")
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/dashboard/")  # logged in: the first page is the dashboard
        page.screenshots = tmp_path  # where a failing test leaves its pictures
        yield page
        browser.close()


def test_a_campaign_start_typed_in_the_browser_is_the_programs_local_time(browser_page, live_server):
    program = ProgramFactory(timezone="Europe/Paris")
    rule = EarningRuleFactory(program=program, name="Summer campaign")
    page = browser_page

    page.goto(f"{live_server.url}/admin/workflows/earningrule/{rule.pk}/change/")
    page.fill("#id_starts_at_0", "2026-07-01")
    page.fill("#id_starts_at_1", "09:00:00")
    assert page.get_by_text("Time zone: Europe/Paris").first.is_visible()
    # The fields say their zone; Django's "N hours behind server time" note would contradict it.
    assert not page.locator(".timezonewarning").first.is_visible()
    page.screenshot(path=str(page.screenshots / "rule.png"), full_page=True)
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist")

    rule.refresh_from_db()
    assert rule.starts_at == dt.datetime(2026, 7, 1, 9, 0, tzinfo=PARIS)
    assert rule.starts_at.astimezone(dt.UTC).hour == 7
    # Shown back as typed.
    assert page.input_value("#id_starts_at_0") == "2026-07-01"
    assert page.input_value("#id_starts_at_1") == "09:00:00"
    assert EarningRule.objects.filter(name="Summer campaign").count() == 1


def test_a_tier_below_the_threshold_of_the_tier_under_it_is_refused_on_the_page(browser_page, live_server):
    program = ProgramFactory()
    TierFactory(program=program, name="Silver", position=1, threshold=Decimal("100"))
    page = browser_page

    page.goto(f"{live_server.url}/admin/tiers/tier/add/?program={program.pk}")
    page.select_option("#id_program", str(program.pk))
    page.fill("#id_name", "Gold")
    page.fill("#id_position", "2")
    page.fill("#id_threshold", "50")
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote")
    page.screenshot(path=str(page.screenshots / "tier.png"), full_page=True)

    assert "Silver" in page.locator(".errorlist").first.inner_text()
    assert list(Tier.objects.filter(program=program).values_list("name", flat=True)) == ["Silver"]
