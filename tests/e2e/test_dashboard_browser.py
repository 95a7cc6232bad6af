"""The dashboard in a real browser (Playwright, Debian's Chromium): a manager opens it, sees the
KPIs and the charts (SVG images that load), changes the period, and downloads a chart's CSV.
Screenshots at 1440x900 and 390 wide are left in the test's temporary folder."""

from __future__ import annotations

import datetime as dt
import shutil
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from dashboard import rollups
from loyalty import services
from tests.loyalty.factories import MemberFactory, ProgramFactory

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


def _history():
    """Eight weeks of a small program: members joining, buying, earning and redeeming."""
    program = ProgramFactory(name="Café Lumière", timezone="Europe/Paris", pending_days=0)
    today = dt.datetime.now(dt.UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    start = today - dt.timedelta(days=56)
    members = []
    for i in range(24):
        joined = start + dt.timedelta(days=2 * i)
        channel = ("online", "pos", "online", "import")[i % 4]
        members.append(MemberFactory(program=program, enrolled_at=joined, enrollment_channel=channel))
    for i, m in enumerate(members):
        for k in range(i % 5 + 1):
            when = m.enrolled_at + dt.timedelta(days=1 + 3 * k)
            if when >= today:
                break
            amount = Decimal(20 + 7 * ((i + k) % 6))
            activity = services.activity_record(
                program=program,
                member=m,
                type="purchase",
                occurred_at=when,
                order_id=f"o{i}-{k}",
                amount=amount,
                currency="EUR",
            )
            services.points_earn(program=program, member_id=m.pk, points=int(amount) * 10, activity=activity, now=when)
        if i % 3 == 0:
            services.points_redeem(
                program=program, member_id=m.pk, points=150, reason="Free coffee", now=today - dt.timedelta(days=2)
            )
    rollups.rollup_program(program, now=today)
    return program


@pytest.fixture
def page(live_server, monkeypatch, tmp_path):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    get_user_model().objects.create_superuser("manager", "manager@example.com", "manager-pass-1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
        )
        context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="UTC", accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{live_server.url}/admin/login/?next=/admin/dashboard/")
        page.fill("#id_username", "manager")
        page.fill("#id_password", "manager-pass-1")
        page.click("input[type=submit]")
        page.screenshots = tmp_path
        yield page
        browser.close()


def test_the_dashboard_with_charts_and_a_csv_download(page, live_server):
    from playwright.sync_api import expect

    program = _history()
    page.goto(f"{live_server.url}/admin/dashboard/?program={program.pk}&bucket=week")
    expect(page.locator("#kpi-members .dash-kpi-value")).to_have_text("24")
    expect(page.locator("#chart-points img")).to_be_visible()
    # Every chart image loaded (an SVG the browser could draw).
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.dash-chart img')).every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(page.screenshots / "dashboard-1440.png"), full_page=True)

    with page.expect_download() as info:
        page.locator("#chart-points .dash-csv a").click()
    download = info.value
    with open(download.path(), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("Period,Earned,Redeemed,Expired")
    assert download.suggested_filename.endswith(".csv")

    page.select_option("#id_bucket", "month")
    page.click(".dash-filters button[type=submit]")
    expect(page.locator("#id_bucket")).to_have_value("month")
    expect(page.locator("#chart-revenue img")).to_be_visible()

    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(page.screenshots / "dashboard-390.png"), full_page=True)

    page.fill("#id_start", "2020-01-01")
    page.click(".dash-filters button[type=submit]")
    expect(page.locator(".errorlist").first).to_contain_text("at most")
