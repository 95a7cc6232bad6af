"""The member's email pages in a real browser (Playwright, Debian's Chromium): the unsubscribe
confirmation, its result, the preferences and a damaged link, in the program's colours and
the member's language. Screenshots go to $LOYALTY_SCREENSHOTS (else the test's tmp dir)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from notifications import emails
from notifications.models import EmailOptOut, EmailSettings
from tests.loyalty.factories import MemberFactory, ProgramFactory

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def page(live_server, monkeypatch, tmp_path):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 420, "height": 800})  # a phone: where emails are read
        page.set_default_timeout(60_000)
        page.shots = Path(os.environ.get("LOYALTY_SCREENSHOTS") or tmp_path)
        page.shots.mkdir(parents=True, exist_ok=True)
        yield page
        browser.close()


def url(live_server, name, member, kind):
    token = emails.unsubscribe_token(member_id=member.pk, kind=kind)
    return live_server.url + reverse(f"notifications:{name}", args=[token])


def test_a_french_member_unsubscribes_in_the_browser(page, live_server):
    program = ProgramFactory(name="Brûlerie du Port", brand_color="#7A3E9D", language="fr")
    EmailSettings.objects.create(program=program, postal_address="12 quai des Chartrons\n33000 Bordeaux")
    member = MemberFactory(program=program, email="zoe@example.com", email_consent=True)

    page.goto(url(live_server, "unsubscribe", member, "points_reminder"))
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_role("button", name="Me désabonner", exact=True).is_visible()
    assert page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(122, 62, 157)"
    page.screenshot(path=str(page.shots / "unsubscribe-fr.png"), full_page=True)
    assert not EmailOptOut.objects.exists()  # opening the page changes nothing

    page.get_by_role("button", name="Me désabonner", exact=True).click()
    page.wait_for_selector(".ok")
    assert "Relevé de points" in page.locator(".ok").inner_text()
    page.screenshot(path=str(page.shots / "unsubscribe-fr-done.png"), full_page=True)
    assert list(EmailOptOut.objects.values_list("kind", flat=True)) == ["points_reminder"]

    page.get_by_role("link", name="Choisir les e-mails que je reçois").click()
    page.wait_for_selector("input[name=kinds]")
    assert not page.locator("input[value=points_reminder]").is_checked()
    page.locator("input[value=birthday]").uncheck()
    page.get_by_role("button", name="Enregistrer mes choix").click()
    page.wait_for_selector(".ok")
    page.screenshot(path=str(page.shots / "preferences-fr.png"), full_page=True)
    assert EmailOptOut.objects.filter(member=member, kind="birthday").exists()


def test_english_pages_and_a_damaged_link(page, live_server):
    program = ProgramFactory(name="Demo Coffee Roasters", brand_color="#8B4513")
    member = MemberFactory(program=program, email="ada@example.com")
    page.goto(url(live_server, "preferences", member, "welcome"))
    assert page.get_by_role("heading", name="Email preferences").is_visible()
    page.screenshot(path=str(page.shots / "preferences-en.png"), full_page=True)

    page.goto(url(live_server, "unsubscribe", member, "points_earned"))
    page.screenshot(path=str(page.shots / "unsubscribe-en.png"), full_page=True)

    response = page.goto(url(live_server, "unsubscribe", member, "welcome")[:-4] + "zzz/")
    assert response.status == 400
    assert page.get_by_role("heading", name="This link is not valid").is_visible()
    page.screenshot(path=str(page.shots / "invalid-link.png"), full_page=True)
