"""The portal's card pages in a real browser (Playwright driving Debian's Chromium), on a phone
(390x844) and a desktop (1440x900): a member with no card yet claims the card they got at the
till with its PIN (its points move to them), sees My card with the QR code, the barcode and the
wallet buttons, then opens How to earn and the program terms. On every page: axe-core finds no
serious or critical violation and the Content-Security-Policy blocks nothing.

Screenshots go to $PORTAL_SCREENSHOTS (else the test's tmp_path)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cards import numbers
from loyalty.models import Member
from loyalty.services.points import points_adjust
from portal import services as portal_services
from tests.cards.factories import CardFactory
from tests.e2e.test_portal_browser import CHROMIUM, VIEWPORTS, browser, check_page, shots  # noqa: F401
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.portal.conftest import link_of
from tests.portal.test_wallet import _fresh_credentials, apple_settings, google_settings, pki  # noqa: F401
from tests.workflows.factories import EarningRuleFactory
from workflows.models import EarningRule

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TERMS = "Points have no cash value.\n\nWe may change these terms with 30 days' notice by email."


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_member_claims_a_card_sees_it_and_reads_how_to_earn_and_the_terms(
    browser,  # noqa: F811
    live_server,
    shots,  # noqa: F811
    viewport,
    apple_settings,  # noqa: F811
    google_settings,  # noqa: F811
):
    program = ProgramFactory(name="Corner Bakery", points_name="crumbs", brand_color="#B5179E", terms=TERMS)
    EarningRuleFactory(program=program, name="Base", trigger="purchase", kind=EarningRule.Kind.PER_AMOUNT, points=None)
    EarningRuleFactory(program=program, name="Welcome", trigger="signup", points=Decimal(100))
    EarningRuleFactory(
        program=program, name="Croissant", trigger="purchase", points=Decimal(5), customer_text="5 crumbs per croissant"
    )
    member = MemberFactory(program=program, first_name="Léa", email="lea@example.com")
    anonymous = MemberFactory(
        program=program, external_id=None, email="", first_name="", last_name="", enrollment_channel=Member.Channel.CARD
    )
    points_adjust(program=program, member_id=anonymous.pk, points=80, reason="till", source="test")
    card = CardFactory(member=anonymous)
    grouped = " ".join(card.number[i : i + 4] for i in range(0, len(card.number), 4))

    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-GB", timezone_id="Europe/Paris")
    page = context.new_page()
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    base = f"{live_server.url}/p/{program.slug}"

    # Log in with an emailed link.
    portal_services.login_link_send(program=program, email=member.email)
    page.goto(f"{live_server.url}{link_of(member)}")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    before = int(page.locator(".balance .number").inner_text())

    # My card: no card yet, and the way to add one.
    page.get_by_role("link", name="My card").click()
    page.wait_for_url(f"{base}/card")
    assert page.get_by_role("heading", name="You have no card yet").is_visible()
    check_page(page, f"{viewport}-card-1-no-card", shots, problems)
    page.get_by_role("link", name="Add a card").click()
    page.wait_for_url(f"{base}/card/claim")

    # A wrong PIN first: a clear error on the PIN field.
    wrong = "000000" if numbers.pin_for(card.number) != "000000" else "111111"
    page.get_by_label("Card number").fill(grouped)
    page.get_by_label("PIN").fill(wrong)
    page.get_by_role("button", name="Add the card").click()
    page.get_by_text("This PIN is not the card's. 4 tries left.").wait_for(state="visible", timeout=30_000)
    check_page(page, f"{viewport}-card-2-wrong-pin", shots, problems)

    # The right PIN, from the keyboard.
    page.get_by_label("PIN").fill(numbers.pin_for(card.number))
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/card")
    assert page.get_by_text("is yours now").is_visible()
    assert page.get_by_text(grouped).is_visible()
    for name in ("QR code", "Barcode"):
        image = page.get_by_alt_text(f"{name} of card {grouped}")
        assert image.is_visible()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), f"{name} did not load"
    assert page.get_by_role("link", name="Add to Apple Wallet").is_visible()
    assert page.get_by_role("link", name="Add to Google Wallet").is_visible()
    check_page(page, f"{viewport}-card-3-my-card", shots, problems)

    # The card's 80 crumbs are the member's now (and the signup bonus, which a claim awards
    # to a member who never had it: this factory-made member had not).
    page.get_by_role("link", name="My points").click()
    assert page.locator(".balance .number").inner_text() == str(before + 80 + 100)

    # How to earn, from the menu.
    page.get_by_role("link", name="How to earn").click()
    page.wait_for_url(f"{base}/earn")
    assert page.get_by_role("heading", name="How to earn crumbs").is_visible()
    for text in ("1 crumb per EUR 1 spent", "100 crumbs when you join", "5 crumbs per croissant"):
        assert page.get_by_text(text).is_visible(), text
    check_page(page, f"{viewport}-card-4-how-to-earn", shots, problems)

    # The terms, from the footer.
    page.get_by_role("contentinfo").get_by_role("link", name="Program terms").click()
    page.wait_for_url(f"{base}/terms")
    assert page.get_by_role("heading", name="Terms of Corner Bakery").is_visible()
    assert page.get_by_text("Points have no cash value.").is_visible()
    check_page(page, f"{viewport}-card-5-terms", shots, problems)
    context.close()
