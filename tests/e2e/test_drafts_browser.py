"""A configuration draft in a real browser (Debian's Chromium): a manager starts a draft on the
program's page, edits a rule with the draft's form, reads the live and draft values side by
side, publishes with a note and lands on the version. Screenshots at 1440x900 in the test's
tmp_path (draft_edit.png, draft_diff.png, draft_published.png)."""

from __future__ import annotations

import shutil

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from programfiles.models import ProgramVersion
from tests.programfiles.builders import build_program
from workflows.models import EarningRule

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def manager_page(live_server, monkeypatch, tmp_path, settings):
    import importlib

    from playwright.sync_api import sync_playwright

    # A transactional test empties the tables after it: the roles come back (loyalty 0018,
    # programfiles 0001).
    importlib.import_module("loyalty.migrations.0018_staff_programs_and_roles").grant_roles(Group, Permission)
    importlib.import_module("programfiles.migrations.0001_drafts").grant(Group, Permission)
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    user = get_user_model().objects.create_user("manager", "manager@example.com", "manager-pass-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Manager"))
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


def test_edit_a_draft_rule_see_the_diff_and_publish(manager_page, live_server):
    from playwright.sync_api import expect

    program = build_program()
    page = manager_page

    page.goto(f"{live_server.url}/admin/loyalty/program/{program.pk}/change/")
    page.get_by_role("link", name="Start a draft").click()
    page.get_by_role("button", name="Start the draft").click()
    expect(page.locator("#pf-status")).to_contain_text("Draft, not live.")
    expect(page.locator("#pf-changes-title")).to_contain_text("(0)")

    page.locator("#pf-earning_rules").get_by_role("link", name="Double weekend").click()
    page.fill("#id_multiplier", "3")
    page.fill("#id_name", "Triple weekend")
    page.get_by_label("Friday").check()
    page.screenshot(path=str(page.screenshots / "draft_edit.png"), full_page=False)
    page.get_by_role("button", name="Save in the draft").click()

    expect(page.locator(".messagelist")).to_contain_text("Saved in the draft: Triple weekend.")
    expect(page.locator("#pf-changes-title")).to_contain_text("(3)")
    expect(page.get_by_text("double-weekend.multiplier")).to_be_visible()
    expect(page.locator("#pf-earning_rules .pf-state.changed")).to_have_count(1)
    assert EarningRule.objects.get(program=program, code="double-weekend").multiplier == 2  # not live yet
    page.screenshot(path=str(page.screenshots / "draft_diff.png"), full_page=True)

    page.fill("#id_note", "Weekend x3, Fridays too")
    page.get_by_role("button", name="Publish").click()

    expect(page.locator(".messagelist")).to_contain_text("Published: version 1 is live (3 change(s)).")
    expect(page.locator("#pf-version")).to_contain_text("Weekend x3, Fridays too")
    page.screenshot(path=str(page.screenshots / "draft_published.png"), full_page=False)
    rule = EarningRule.objects.get(program=program, code="double-weekend")
    assert (rule.multiplier, rule.name, sorted(rule.days_of_week)) == (3, "Triple weekend", [4, 5, 6])
    assert ProgramVersion.objects.get(program=program).note == "Weekend x3, Fridays too"
