"""Switching the demo's win-back automation on in a real browser (Debian's Chromium): its change
page shows the audience and cost, ticking "Is active" and saving leads to the confirmation page
that names them, and only the ticked confirmation switches it on. Screenshots at 1440x900 in the
test's tmp_path."""

from __future__ import annotations

import io
import shutil

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from loyalty.models import StaffAction
from workflows import activation
from workflows.models import Automation

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
        page = browser.new_page(viewport={"width": 1440, "height": 900}, timezone_id="UTC")
        page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "manager")
        page.fill("#id_password", "manager-pass-1")
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")
        page.screenshots = tmp_path
        yield page
        browser.close()


def test_switching_the_demo_win_back_on_goes_through_the_confirmation(browser_page, live_server):
    from playwright.sync_api import expect

    call_command("load_demo", members=40, stdout=io.StringIO())
    win_back = Automation.objects.get(program__slug="demo", ready_made="win_back")
    assert not win_back.is_active
    preview = activation.activation_preview(automation=win_back)
    assert preview.members > 0
    assert preview.coupons == preview.members
    page = browser_page

    page.goto(f"{live_server.url}/admin/workflows/automation/{win_back.pk}/change/")
    panel = page.locator(".activation-preview")
    expect(panel).to_contain_text(f"to {preview.members} members")
    expect(panel.locator(".activation-sample a").first).to_be_visible()
    panel.scroll_into_view_if_needed()
    page.screenshot(path=str(page.screenshots / "automation_change_preview.png"))

    page.check("#id_is_active")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("still off")
    expect(page.locator("label[for=id_confirm]")).to_contain_text(preview.sentence())
    page.screenshot(path=str(page.screenshots / "automation_confirm.png"), full_page=True)
    win_back.refresh_from_db()
    assert not win_back.is_active

    page.click("input[name=_activate]")  # without the box: refused
    expect(page.locator(".errorlist")).to_contain_text("Tick the box")
    page.check("#id_confirm")
    page.click("input[name=_activate]")
    expect(page.locator(".messagelist")).to_contain_text("Switched on")
    page.screenshot(path=str(page.screenshots / "automation_switched_on.png"))
    win_back.refresh_from_db()
    assert win_back.is_active
    audit = StaffAction.objects.get(action="automation_activated")
    assert audit.details["members"] == preview.members
