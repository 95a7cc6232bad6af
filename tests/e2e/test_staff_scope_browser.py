"""Roles and programs in a real browser (Playwright with Debian's Chromium at /usr/bin/chromium,
never a downloaded browser; skipped where it is not installed). Screenshots at 1440x900 in the
test's temporary directory.

A brand's manager (limited to the Espresso Bar) lists members and sees the bar's only; the other
brand's member, opened by its URL, answers "not found" in the admin's frame. A support user
opening the program settings is refused with a page that says why."""

from __future__ import annotations

import importlib
import shutil

import pytest
from django.contrib.auth.models import Group, Permission

from loyalty.models import StaffProgram
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "staff-pass-1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


def staff(username: str, group: str, *programs):
    user = StaffFactory(username=username, first_name=username.title())
    user.set_password(PASSWORD)
    user.save()
    user.groups.add(Group.objects.get(name=group))
    for program in programs:
        StaffProgram.objects.create(user=user, program=program)
    return user


@pytest.fixture
def browser(live_server, monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield chromium
        chromium.close()


def logged_in(browser, live_server, username: str):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.locator("#user-tools").wait_for(state="visible")
    return page


@pytest.fixture
def brands(transactional_db):
    # A transactional test empties the tables after it: the roles of migration 0018 come back.
    roles = importlib.import_module("loyalty.migrations.0018_staff_programs_and_roles")
    roles.grant_roles(Group, Permission)

    bar = ProgramFactory(name="Demo Espresso Bar", slug="bar")
    roasters = ProgramFactory(name="Demo Coffee Roasters", slug="roasters")
    for first, last in (("Léa", "Martin"), ("Hugo", "Bernard")):
        MemberFactory(program=bar, first_name=first, last_name=last)
    outsider = MemberFactory(program=roasters, first_name="Zoé", last_name="Roasters-Only")
    return bar, roasters, outsider


def test_a_brands_manager_sees_only_that_brand(browser, live_server, brands, tmp_path):
    bar, roasters, outsider = brands
    staff("bar.manager", "Manager", bar)
    page = logged_in(browser, live_server, "bar.manager")

    page.goto(f"{live_server.url}/admin/loyalty/member/")
    page.get_by_role("link", name="Léa Martin").wait_for(state="visible")
    page.get_by_role("link", name="Hugo Bernard").wait_for(state="visible")
    assert page.get_by_text("Zoé Roasters-Only").count() == 0
    assert page.get_by_text(roasters.name).count() == 0  # not even in the program filter
    page.screenshot(path=str(tmp_path / "brand-member-list.png"), full_page=True)

    response = page.goto(f"{live_server.url}/admin/loyalty/member/{outsider.pk}/change/")
    assert response.status == 404
    page.get_by_text("belongs to a program you do not work on").wait_for(state="visible")
    page.get_by_text("programs: Demo Espresso Bar").wait_for(state="visible")
    page.screenshot(path=str(tmp_path / "brand-other-member.png"), full_page=True)

    response = page.goto(f"{live_server.url}/admin/loyalty/program/{roasters.pk}/change/")
    assert response.status == 404


def test_support_is_refused_the_program_settings(browser, live_server, brands, tmp_path):
    bar, _roasters, _outsider = brands
    staff("support.desk", "Support")
    page = logged_in(browser, live_server, "support.desk")

    page.goto(f"{live_server.url}/admin/cards/card/")
    page.locator("#changelist").wait_for(state="visible")
    response = page.goto(f"{live_server.url}/admin/loyalty/program/{bar.pk}/change/")
    assert response.status == 403
    page.get_by_text("Your role does not include this page.").wait_for(state="visible")
    page.get_by_text("Support; every program").wait_for(state="visible")
    page.screenshot(path=str(tmp_path / "support-settings-refused.png"), full_page=True)


def test_an_owner_sets_a_users_role_and_programs(browser, live_server, brands, tmp_path):
    bar, _roasters, _outsider = brands
    manager = staff("bar.manager", "Manager", bar)
    staff("boss", "Owner")
    page = logged_in(browser, live_server, "boss")

    page.goto(f"{live_server.url}/admin/auth/user/")
    row = page.locator("tr", has_text="bar.manager")
    row.get_by_text("Demo Espresso Bar").wait_for(state="visible")
    page.locator("tr", has_text="boss").get_by_text("All programs").wait_for(state="visible")
    page.screenshot(path=str(tmp_path / "users.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/auth/user/{manager.pk}/change/")
    inline = page.locator("#staff_programs-group")
    inline.get_by_text("Programs this user works on").wait_for(state="visible")
    assert inline.locator("select").first.input_value() == str(bar.pk)
    inline.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "user-programs.png"), full_page=False)
