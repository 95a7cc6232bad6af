"""The back-office a manager reads, in a real browser (Debian's Chromium at 1440x900, never a
downloaded browser): the login page with the installation's name, the navigation grouped by task
after login, a member picked by name in an autocomplete field, and the API docs (Swagger UI,
Redoc) rendering under the staff pages' Content-Security-Policy. Every page's console is watched
for CSP refusals. Screenshots go to the test's tmp_path."""

from __future__ import annotations

import shutil

import pytest
from django.contrib.auth import get_user_model

from cards.models import Card
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory, ProgramFactory

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.fixture
def browser(live_server, monkeypatch, settings):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.LOYALTY_SITE_NAME = "Café Lumière back-office"
    get_user_model().objects.create_superuser("owner", "owner@example.com", "owner-pass-1")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 900}, timezone_id="UTC")
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    page.csp_refusals = []
    page.on(
        "console",
        lambda message: (
            page.csp_refusals.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    page.screenshots = tmp_path
    return page


def log_in(page, live_server):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "owner")
    page.fill("#id_password", "owner-pass-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/dashboard/")


def test_the_login_page_and_the_grouped_navigation(page, live_server):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/admin/login/")
    expect(page.locator("#site-name")).to_have_text("Café Lumière back-office")
    assert page.title() == "Log in | Café Lumière back-office"
    page.screenshot(path=str(page.screenshots / "login.png"))

    log_in(page, live_server)  # the first page after login is the dashboard
    page.goto(f"{live_server.url}/admin/sections/")
    captions = page.locator("#content-main .module caption a")
    expect(captions.first).to_have_text("Members")
    assert captions.all_inner_texts() == [
        "MEMBERS",
        "CARDS",
        "REWARDS",
        "RULES AND AUTOMATIONS",
        "EMAILS",
        "REPORTS",
        "SETTINGS",
        "TECHNICAL",
    ]
    page.screenshot(path=str(page.screenshots / "sections.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/loyalty/member/")
    sidebar = page.locator("#nav-sidebar")
    expect(sidebar.get_by_role("link", name="Points history (ledger)")).to_be_visible()
    expect(sidebar.get_by_role("link", name="Scheduled jobs")).to_be_visible()
    page.screenshot(path=str(page.screenshots / "members.png"))
    assert page.csp_refusals == []


def test_a_card_is_assigned_to_a_member_picked_by_name(page, live_server):
    from playwright.sync_api import expect

    program = ProgramFactory(name="Café Lumière")
    marie = MemberFactory(program=program, first_name="Marie", last_name="Dupont", email="marie.d@example.org")
    MemberFactory(program=program, first_name="Jean", last_name="Martin")
    card = CardFactory(program=program)
    log_in(page, live_server)

    page.goto(f"{live_server.url}/admin/cards/card/{card.pk}/assign/")
    page.click(".select2-selection")  # the autocomplete widget (Select2, the admin's own scripts)
    page.fill(".select2-search__field", "dupo")
    option = page.locator(".select2-results__option", has_text="Marie Dupont")
    option.wait_for(state="visible")
    page.screenshot(path=str(page.screenshots / "autocomplete.png"))
    option.click()
    page.click("input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text(f"assigned to {marie}")

    card.refresh_from_db()
    assert card.member_id == marie.pk
    assert card.status == Card.Status.ACTIVE
    assert page.csp_refusals == []


def test_the_api_docs_render_under_the_policy(page, live_server):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Loyalty API", timeout=60_000)
    expect(page.locator(".opblock-tag").first).to_be_visible(timeout=60_000)  # the operations, from the schema
    page.screenshot(path=str(page.screenshots / "swagger.png"))

    page.goto(f"{live_server.url}/api/redoc/")
    expect(page.locator(".api-info h1")).to_contain_text("Loyalty API", timeout=60_000)
    page.screenshot(path=str(page.screenshots / "redoc.png"))
    assert page.csp_refusals == []
