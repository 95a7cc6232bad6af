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


def test_the_branding_preview_follows_the_colour_and_warns_when_unreadable(browser_page, live_server):
    """The program's Branding section shows the portal's header, menu, balance and a button in
    the program's colour; changing the colour field redraws it at once (a static script, no
    inline one) and warns when text on the colour is hard to read. Screenshots:
    $PORTAL_SCREENSHOTS or the test's folder (admin-branding-*.png)."""
    import os
    from pathlib import Path

    shots = Path(os.environ.get("PORTAL_SCREENSHOTS") or browser_page.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    program = ProgramFactory(name="Bean Club", points_name="beans", brand_color="#6F4E37")
    page = browser_page
    page.goto(f"{live_server.url}/admin/loyalty/program/{program.pk}/change/")
    preview = page.locator("[data-brand-preview]")
    preview.scroll_into_view_if_needed()
    button = preview.locator(".bp-button")
    warning = preview.locator("[data-bp-warning]")

    def background() -> str:
        return button.evaluate("el => getComputedStyle(el).backgroundColor")

    assert background() == "rgb(111, 78, 55)"
    assert button.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    assert warning.is_hidden()
    assert preview.locator(".bp-name").inner_text() == "Bean Club"
    preview.screenshot(path=str(shots / "admin-branding-brown.png"))

    # A mid grey: no text colour reads on it. The preview redraws and warns, before any save.
    page.fill("#id_brand_color", "#808080")
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.bp-button')).backgroundColor === 'rgb(128, 128, 128)'"
    )
    warning.wait_for(state="visible")
    assert "Hard to read" in warning.inner_text()
    assert "4.5:1 needed" in warning.inner_text()
    preview.screenshot(path=str(shots / "admin-branding-grey-warning.png"))

    # A pale yellow: dark text on the button reads; the links turn dark on white (a note).
    page.fill("#id_brand_color", "#ffe600")
    warning.wait_for(state="hidden")
    assert button.evaluate("el => getComputedStyle(el).color") == "rgb(31, 35, 40)"
    assert preview.locator(".bp-link").evaluate("el => getComputedStyle(el).color") == "rgb(31, 35, 40)"
    assert "Too light for text on white" in preview.locator("[data-bp-note]").inner_text()
    page.fill("#id_name", "Maison Café")
    page.wait_for_function("() => document.querySelector('.bp-name').textContent === 'Maison Café'")
    preview.screenshot(path=str(shots / "admin-branding-yellow.png"))
    # Nothing was saved: the preview is only a preview.
    program.refresh_from_db()
    assert program.brand_color == "#6F4E37"


def test_declining_a_deletion_request_asks_for_the_reason_the_member_is_sent(browser_page, live_server):
    """Loyalty > Deletion requests: select a waiting request, "Decline", type the reason on the
    second step, and the member's email with it is in the outbox. Screenshot:
    admin-deletion-decline.png."""
    import os
    from pathlib import Path

    from loyalty import services as ledger
    from loyalty.models import DeletionRequest
    from notifications.models import EmailMessage
    from tests.loyalty.factories import MemberFactory

    shots = Path(os.environ.get("PORTAL_SCREENSHOTS") or browser_page.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    program = ProgramFactory(name="Bean Club")
    member = MemberFactory(program=program, first_name="Léa", last_name="Martin", email="lea@example.com")
    request = ledger.deletion_request_create(member=member)
    page = browser_page
    page.goto(f"{live_server.url}/admin/loyalty/deletionrequest/")
    page.locator(f"input[name=_selected_action][value='{request.pk}']").check()
    page.select_option("select[name=action]", "decline")
    page.get_by_role("button", name="Go").click()
    page.get_by_text("Say why you decline").wait_for(state="visible")
    page.get_by_label("Reason").fill(
        "Your order A-17 is still on its way: we can delete your data once it has arrived."
    )
    page.screenshot(path=str(shots / "admin-deletion-decline.png"), full_page=True)
    page.get_by_role("button", name="Decline and email the reason").click()
    page.get_by_text("Declined: 1 request. Each member is told by email.").wait_for(state="visible")
    assert DeletionRequest.objects.get(pk=request.pk).status == "declined"
    row = EmailMessage.objects.get(member=member, kind="deletion_declined")
    assert "A-17" in row.data["reason"]
