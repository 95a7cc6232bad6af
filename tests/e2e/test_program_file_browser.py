"""The program file in a real browser (Debian's Chromium): a manager uploads an edited file on
the program's page, reads the changes, confirms, and the program has them; a broken file is
refused with the places to fix. Screenshots at 1440x900 in the test's tmp_path."""

from __future__ import annotations

import shutil

import pytest
from django.contrib.auth import get_user_model

from programfiles.export import dumps, export_document
from tests.programfiles.builders import build_program
from tiers.models import Tier
from workflows.models import EarningRule

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def browser_page(live_server, monkeypatch, tmp_path, settings):
    from playwright.sync_api import sync_playwright

    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
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


def test_upload_diff_confirm(browser_page, live_server, tmp_path):
    from playwright.sync_api import expect

    program = build_program()
    document = export_document(program)
    rule = next(r for r in document["earning_rules"] if r["code"] == "double-weekend")
    rule["multiplier"] = 3
    rule["name"] = "Triple weekend"
    document["tiers"].append({"name": "Platinum", "position": 3, "threshold": 2000, "multiplier": 3})
    document["branding"]["brand_color"] = "#7A3E9D"
    edited = tmp_path / "shop.yaml"
    edited.write_text(dumps(document))
    page = browser_page

    page.goto(f"{live_server.url}/admin/loyalty/program/{program.pk}/change/")
    page.get_by_role("link", name="Upload configuration").click()
    page.set_input_files("input[type=file]", str(edited))
    page.get_by_role("button", name="Show the changes").click()
    expect(page.locator("#pf-summary")).to_contain_text("Nothing has been written yet.")
    expect(page.get_by_text("double-weekend.multiplier")).to_be_visible()
    page.screenshot(path=str(page.screenshots / "program_file_diff.png"), full_page=False)
    assert EarningRule.objects.get(program=program, code="double-weekend").multiplier == 2

    page.get_by_role("button", name="Load this configuration").click()
    expect(page.locator(".messagelist")).to_contain_text("Configuration loaded: 4 change(s).")
    page.screenshot(path=str(page.screenshots / "program_file_loaded.png"), full_page=False)

    assert EarningRule.objects.get(program=program, code="double-weekend").multiplier == 3
    assert Tier.objects.filter(program=program, name="Platinum").exists()


def test_a_broken_file_is_refused_with_paths(browser_page, live_server, tmp_path):
    from playwright.sync_api import expect

    program = build_program()
    document = export_document(program)
    document["earning_rules"][0]["conditions"]["min_amount"] = "twenty"
    document["tiers"][0]["colour"] = "gold"
    broken = tmp_path / "broken.yaml"
    broken.write_text(dumps(document))
    page = browser_page

    page.goto(f"{live_server.url}/admin/program-files/{program.pk}/upload/")
    page.set_input_files("input[type=file]", str(broken))
    page.get_by_role("button", name="Show the changes").click()
    expect(page.locator("#pf-problems")).to_contain_text("earning_rules[0].conditions.min_amount: must be a number")
    expect(page.locator("#pf-problems")).to_contain_text("tiers[0].colour: unknown key")
    page.screenshot(path=str(page.screenshots / "program_file_problems.png"), full_page=False)
