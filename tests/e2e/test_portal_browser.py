"""The customer portal in a real browser (Playwright driving Debian's Chromium), on a phone
(390x844) and a desktop (1440x900): a customer joins, opens the login link of the email the
outbox sent, and sees the balance. On every page: axe-core finds no serious or critical
violation, the Content-Security-Policy blocks nothing, and the page works by keyboard.

Screenshots go to $PORTAL_SCREENSHOTS (else the test's tmp_path)."""

from __future__ import annotations

import os
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail

from tests.loyalty.factories import ProgramFactory
from tests.workflows.factories import EarningRuleFactory
from tiers.services import tier_create

CHROMIUM = "/usr/bin/chromium"
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1440, "height": 900}}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("PORTAL_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_page(page, name: str, shots: Path, problems: list[str]) -> None:
    """axe-core on the page (no serious or critical violation), then a full-page screenshot."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{name}: " + "; ".join(f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in bad)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert not problems, f"{name}: {problems}"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_customer_joins_opens_the_emailed_link_and_sees_the_balance(browser, live_server, shots, viewport):
    program = ProgramFactory(name="Corner Bakery", points_name="crumbs", brand_color="#B5179E", pending_days=0)
    EarningRuleFactory(program=program, trigger="signup", name="Welcome bonus", points=Decimal(100))
    tier_create(program=program, name="Regular", position=1, threshold=Decimal(0), benefits="A free coffee a month")
    tier_create(program=program, name="Friend of the house", position=2, threshold=Decimal(500))
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-GB", timezone_id="Europe/Paris")
    page = context.new_page()
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    base = f"{live_server.url}/p/{program.slug}"

    # Join, by keyboard: the first Tab reaches the skip link, which jumps to the content.
    page.goto(f"{base}/join")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip() == "Skip to content"
    check_page(page, f"{viewport}-1-join", shots, problems)
    page.get_by_label("Email address").fill("Lea.Martin@example.com")
    page.get_by_label("First name").fill("Léa")
    page.get_by_label("Last name").fill("Martin")
    page.get_by_label("Send me offers and news by email").check()
    page.get_by_label("Referral code (optional)").focus()
    page.keyboard.press("Enter")  # submits the form from the keyboard
    page.wait_for_url(f"{base}/join/sent")
    assert page.get_by_role("heading", name="Check your email").is_visible()
    check_page(page, f"{viewport}-2-check-your-email", shots, problems)

    # The login link, from the email the outbox sent (locmem backend).
    login_mail = next(m for m in mail.outbox if "login link" in m.subject)
    path = re.search(r"/p/[\w-]+/login/link\?sesame=[\w-]+", login_mail.body).group(0)
    page.goto(f"{live_server.url}{path}")
    check_page(page, f"{viewport}-3-login-link", shots, problems)
    page.get_by_role("button", name="Log in").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/")

    # My points: the signup bonus is there.
    assert page.get_by_role("heading", name="Hello Léa").is_visible()
    assert page.locator(".balance .number").inner_text() == "100"
    assert page.get_by_text("Welcome bonus").first.is_visible()
    assert page.get_by_text("Regular", exact=True).is_visible()
    check_page(page, f"{viewport}-4-my-points", shots, problems)

    # The link works once: a second visit gets the clear page.
    page.goto(f"{live_server.url}{path}")
    assert page.get_by_role("heading", name="This link no longer works").is_visible()
    check_page(page, f"{viewport}-5-used-link", shots, problems)

    # Switch to French, then log out, by keyboard.
    page.goto(f"{base}/")
    page.get_by_label("Language").select_option("fr")
    page.get_by_role("button", name="Change").click()
    page.wait_for_url(f"{base}/")
    assert page.get_by_role("heading", name="Bonjour Léa").is_visible()
    check_page(page, f"{viewport}-6-mes-points", shots, problems)
    page.get_by_role("button", name="Me déconnecter").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/login")
    assert page.get_by_text("Vous êtes déconnecté.").is_visible()
    check_page(page, f"{viewport}-7-connexion", shots, problems)
    context.close()
