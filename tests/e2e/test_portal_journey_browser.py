"""The whole customer journey in one browser run (Playwright driving Debian's Chromium), on a
phone (390x844) and a desktop (1440x900), the proof of issue 12:

a customer joins at /p/<slug>/join, opens the login link of the outbox's email (its
EmailMessage row), sees the balance, redeems a reward and sees the coupon, claims a card with
its number and PIN (the anonymous card's points move in), copies the referral link, turns an
email kind off and unsubscribes from all offers; a friend joins by the referral link, the shop
reports the friend's first purchase (the service the API calls), and both are rewarded, as each
one's "My points" page shows.

On every page: axe-core finds no serious or critical violation and the Content-Security-Policy
blocks nothing. Screenshots of every page: $PORTAL_SCREENSHOTS/journey-<viewport>/ (else the
test's temporary folder), numbered in the journey's order."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from cards import numbers
from loyalty.models import Member
from loyalty.services.points import points_adjust
from notifications.models import EmailMessage, EmailOptOut
from rewards.models import Redemption
from tests.cards.factories import CardFactory
from tests.e2e.test_portal_browser import CHROMIUM, VIEWPORTS, browser, check_page, shots  # noqa: F401
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.rewards.factories import RewardFactory
from tests.workflows.factories import EarningRuleFactory
from workflows import services as workflow_services
from workflows.models import EarningRule, Referral, ReferralSettings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not __import__("shutil").which(CHROMIUM), reason="Debian's chromium is not installed"),
]


def login_path(email: str) -> str:
    """The link of the newest login email queued in the outbox for `email` (its EmailMessage
    row, as the worker sends it), as a path."""
    row = EmailMessage.objects.filter(kind="login_link", member__email__iexact=email).order_by("-id").first()
    assert row is not None, f"no login email in the outbox for {email}"
    url = urlsplit(row.data["login_url"])
    return f"{url.path}?{url.query}"


def balance(page) -> int:
    return int(page.locator(".balance .number").inner_text().replace(",", "").replace("\u202f", ""))


class Journey:
    """One browser tab of the journey: numbered screenshots and checks on every page."""

    def __init__(self, page, folder: Path, prefix: str) -> None:
        self.page, self.folder, self.prefix, self.count = page, folder, prefix, 0
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(m.text) if "Content Security Policy" in m.text else None)

    def check(self, name: str) -> None:
        self.count += 1
        check_page(self.page, f"{self.prefix}{self.count:02d}-{name}", self.folder, self.problems)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_whole_customer_journey(browser, live_server, shots, viewport):  # noqa: F811
    program = ProgramFactory(
        name="Corner Bakery", points_name="crumbs", brand_color="#B5179E", currency="EUR", pending_days=0
    )
    EarningRuleFactory(program=program, name="Welcome bonus", trigger="signup", points=Decimal(100))
    EarningRuleFactory(program=program, name="Base", trigger="purchase", kind=EarningRule.Kind.PER_AMOUNT, points=None)
    RewardFactory(
        program=program, name="5 EUR off your order", cost_points=60, value=Decimal(5), valid_days=30, position=1
    )
    RewardFactory(program=program, name="Baking class", cost_points=2000, position=2)
    ReferralSettings.objects.create(
        program=program, is_active=True, referrer_points=500, friend_points=250, min_order_amount=Decimal(10)
    )
    # A card used at the till before anyone claimed it: its member is anonymous, with 80 crumbs.
    anonymous = MemberFactory(
        program=program, external_id=None, email="", first_name="", last_name="", enrollment_channel=Member.Channel.CARD
    )
    points_adjust(program=program, member_id=anonymous.pk, points=80, reason="till", source="e2e")
    card = CardFactory(member=anonymous)
    grouped = " ".join(card.number[i : i + 4] for i in range(0, len(card.number), 4))

    folder = shots / f"journey-{viewport}"
    folder.mkdir(parents=True, exist_ok=True)
    base = f"{live_server.url}/p/{program.slug}"

    # -- The customer -----------------------------------------------------------------------
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-GB", timezone_id="Europe/Paris")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    lea = Journey(page, folder, "")

    page.goto(f"{base}/join")
    lea.check("join")
    page.get_by_label("Email address").fill("lea.martin@example.com")
    page.get_by_label("First name").fill("Léa")
    page.get_by_label("Last name").fill("Martin")
    page.get_by_label("Send me offers and news by email").check()
    page.get_by_role("button", name="Join").click()
    page.wait_for_url(f"{base}/join/sent")
    page.get_by_role("heading", name="Check your email").wait_for(state="visible")
    lea.check("check-your-email")

    # The login link, from the outbox's row for this address.
    page.goto(f"{live_server.url}{login_path('lea.martin@example.com')}")
    lea.check("login-link")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    page.get_by_role("heading", name="Hello Léa").wait_for(state="visible")
    assert balance(page) == 100  # the welcome bonus
    lea.check("my-points")
    member = Member.objects.get(program=program, email="lea.martin@example.com")

    # Redeem a reward, then see the coupon.
    page.get_by_role("link", name="Rewards", exact=True).click()
    page.wait_for_url(f"{base}/rewards")
    lea.check("rewards")
    page.locator("li", has=page.get_by_role("heading", name="5 EUR off your order")).get_by_role(
        "button", name="Redeem"
    ).click()
    page.wait_for_url(re.compile(r".*/rewards/\d+/redeem\??$"))  # a GET form without fields ends in "?"
    page.get_by_role("heading", name="Confirm your reward").wait_for(state="visible")
    lea.check("confirm-reward")
    page.get_by_role("button", name="Yes, redeem it").click()
    page.wait_for_url(f"{base}/coupons/*")
    coupon = Redemption.objects.get(member=member)
    page.get_by_text(coupon.code, exact=True).wait_for(state="visible")
    assert page.get_by_role("img", name=f"QR code of coupon {coupon.code}").evaluate("img => img.naturalWidth > 0")
    lea.check("coupon")
    page.get_by_role("link", name="My coupons", exact=True).click()
    page.wait_for_url(f"{base}/coupons")
    page.get_by_text("Ready to use").wait_for(state="visible")
    lea.check("my-coupons")

    # Claim the card from the till: number and PIN; its 80 crumbs move in.
    page.get_by_role("link", name="My card").click()
    page.wait_for_url(f"{base}/card")
    lea.check("my-card")
    page.get_by_role("link", name="Add a card").click()
    page.wait_for_url(f"{base}/card/claim")
    page.get_by_label("Card number").fill(grouped)
    page.get_by_label("PIN").fill(numbers.pin_for(card.number))
    lea.check("claim-card")
    page.get_by_role("button", name="Add the card").click()
    page.wait_for_url(f"{base}/card")
    page.get_by_text(f"The card ending in {card.number[-4:]} is yours now.").wait_for(state="visible")
    assert page.get_by_text("Your balance went up by 80 crumbs.").is_visible()
    lea.check("my-card-claimed")
    page.get_by_role("link", name="My points").click()
    page.wait_for_url(f"{base}/")
    assert balance(page) == 100 - 60 + 80
    assert page.get_by_text(f"Points from your card ending in {card.number[-4:]}").is_visible()
    lea.check("my-points-with-card")

    # Copy the referral link.
    page.get_by_role("link", name="Refer a friend").click()
    page.wait_for_url(f"{base}/refer")
    page.get_by_role("button", name="Copy link").click()
    page.get_by_text("Copied").wait_for(state="visible", timeout=30_000)  # the clipboard promise settles later
    referral_link = page.evaluate("navigator.clipboard.readText()")
    assert referral_link == f"{base}/join?ref={member.referral_code}"
    lea.check("refer")

    # Turn one email kind off, then unsubscribe from every offer.
    page.get_by_role("link", name="Preferences").click()
    page.wait_for_url(f"{base}/preferences")
    page.get_by_label("Points statement").uncheck()
    page.get_by_role("button", name="Save my choices").click()
    page.get_by_text("Your choices are saved.").wait_for(state="visible")
    assert not page.get_by_label("Points statement").is_checked()
    assert EmailOptOut.objects.filter(member=member, kind="points_reminder").exists()
    lea.check("preferences-saved")
    page.get_by_role("button", name="Unsubscribe from all offers and news").click()
    page.get_by_text("Done: you will no longer receive offers and news").wait_for(state="visible")
    lea.check("unsubscribed")
    member.refresh_from_db()
    assert not member.email_consent
    assert EmailOptOut.objects.filter(member=member, kind=EmailOptOut.ALL_MARKETING).exists()

    # -- The friend, in another browser -----------------------------------------------------
    friend_context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-GB", timezone_id="Europe/Paris")
    friend_page = friend_context.new_page()
    friend_page.set_default_timeout(60_000)
    sam = Journey(friend_page, folder, "friend-")
    friend_page.goto(referral_link)
    assert friend_page.get_by_label("Referral code (optional)").input_value() == member.referral_code
    # The invitation says who invited them and what they get; the welcome bonus shows too.
    assert friend_page.get_by_text("Léa invited you to Corner Bakery.").is_visible()
    assert friend_page.get_by_text("you get 250 crumbs after your first purchase of 10.00 EUR or more").is_visible()
    assert friend_page.get_by_text("100 crumbs when you join").is_visible()
    sam.check("join-by-link")
    friend_page.get_by_label("Email address").fill("sam@example.com")
    friend_page.get_by_label("First name").fill("Sam")
    friend_page.get_by_label("Last name").fill("Durand")
    friend_page.get_by_role("button", name="Join").click()
    friend_page.wait_for_url(f"{base}/join/sent")
    friend_page.goto(f"{live_server.url}{login_path('sam@example.com')}")
    friend_page.get_by_role("button", name="Log in").click()
    friend_page.wait_for_url(f"{base}/")
    assert balance(friend_page) == 100
    sam.check("my-points-before-purchase")
    friend = Member.objects.get(program=program, email="sam@example.com")
    assert Referral.objects.get(friend=friend).referrer_id == member.pk

    # The shop reports the friend's first purchase, as its backend does through the API.
    workflow_services.activity_report(
        program=program,
        member=friend,
        type="purchase",
        occurred_at=timezone.now() - dt.timedelta(minutes=1),
        order_id="SHOP-1001",
        amount=Decimal("30.00"),
        currency="EUR",
    )
    assert Referral.objects.get(friend=friend).status == Referral.Status.REWARDED

    # Both are rewarded: each one's "My points".
    friend_page.reload()
    friend_page.get_by_text("Referral bonus").first.wait_for(state="visible")
    assert balance(friend_page) == 100 + 30 + 250
    assert friend_page.get_by_text("Purchase, order SHOP-1001").is_visible()
    sam.check("my-points-rewarded")
    page.get_by_role("link", name="My points").click()
    page.wait_for_url(f"{base}/")
    page.get_by_text("Referral bonus").first.wait_for(state="visible")
    assert balance(page) == 100 - 60 + 80 + 500
    lea.check("my-points-referral-rewarded")
    page.get_by_role("link", name="Refer a friend").click()
    page.wait_for_url(f"{base}/refer")
    page.get_by_text("Rewarded", exact=True).wait_for(state="visible")
    assert page.get_by_text("Sam", exact=True).is_visible()
    lea.check("refer-rewarded")
    friend_context.close()
    context.close()
