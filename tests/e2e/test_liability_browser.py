"""The accountant's liability report in a real browser (Playwright, Debian's Chromium at
/usr/bin/chromium, never a downloaded browser): the report of two currencies with its aging
and roll-forward, a program chosen in the form, and the CSV download. Screenshots at
1440x900 go to $LIABILITY_SCREENSHOTS (else the test's tmp_path)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from loyalty import services
from tests.loyalty.factories import MemberFactory, ProgramFactory

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("LIABILITY_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(live_server, monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("accountant", "accountant@example.com", "accountant-pass-1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="UTC", accept_downloads=True)
        tab = context.new_page()
        tab.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
        tab.goto(f"{live_server.url}/admin/login/")
        tab.fill("#id_username", "accountant")
        tab.fill("#id_password", "accountant-pass-1")
        tab.click("input[type=submit]")
        tab.wait_for_selector("#user-tools")
        yield tab
        browser.close()


def _history(program, months: int, now: dt.datetime) -> None:
    members = [MemberFactory(program=program) for _ in range(3)]
    for back in range(months, 0, -1):
        moment = now - dt.timedelta(days=30 * back)
        for i, member in enumerate(members):
            services.points_earn(program=program, member_id=member.pk, points=400 + 150 * i, now=moment)
        services.points_redeem(program=program, member_id=members[0].pk, points=300, now=moment)
        services.points_expire(now=moment, program=program)
    services.points_adjust(program=program, member_id=members[1].pk, points=-50, reason="typo", source="test", now=now)


def test_the_liability_report_and_its_csv(page, live_server, shots):
    now = timezone.now() - dt.timedelta(hours=1)
    coffee = ProgramFactory(name="Coffee Roasters", currency="EUR", point_value=Decimal("0.01"), expiry_days=120)
    books = ProgramFactory(name="Book Club", currency="EUR", point_value=Decimal("0.02"), expiry_days=None)
    tea = ProgramFactory(name="London Tea", currency="GBP", point_value=Decimal("0.005"), expiry_days=200)
    for program in (coffee, books, tea):
        _history(program, 8, now)

    page.goto(f"{live_server.url}/admin/dashboard/reports/liability/")
    page.get_by_role("heading", name="Outstanding points on").first.wait_for(state="visible")
    page.get_by_text("Reconciled to the ledger: no difference.").first.wait_for(state="visible")
    assert page.get_by_role("heading", name="EUR", exact=True).is_visible()
    assert page.get_by_role("heading", name="GBP", exact=True).is_visible()
    page.screenshot(path=str(shots / "liability-top.png"))
    page.screenshot(path=str(shots / "liability-full.png"), full_page=True)

    page.select_option("#id_program", label="Coffee Roasters")
    page.click("input[value=Show]")
    page.get_by_role("cell", name="Coffee Roasters (1 point = 0.01 EUR)").first.wait_for(state="visible")
    assert page.locator("table.report").get_by_text("Book Club").count() == 0
    page.screenshot(path=str(shots / "liability-one-program.png"), full_page=True)

    with page.expect_download() as info:
        page.get_by_role("link", name="CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("liability-")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    aging = [r for r in rows if len(r) > 2 and r[1].startswith("Outstanding points")]
    assert aging
    assert {r[2] for r in aging} == {"Coffee Roasters (1 point = 0.01 EUR)"}
    assert not any("RECONCILIATION DIFFERENCE" in r for r in rows)

    page.goto(f"{live_server.url}/admin/dashboard/reports/breakage/")
    page.get_by_role("heading", name="Points by the month they were earned").first.wait_for(state="visible")
    page.screenshot(path=str(shots / "breakage.png"), full_page=True)
    page.goto(f"{live_server.url}/admin/dashboard/reports/deferred-revenue/")
    page.get_by_role("heading", name="Inputs").first.wait_for(state="visible")
    page.screenshot(path=str(shots / "deferred.png"), full_page=True)
