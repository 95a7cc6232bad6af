"""The portal's rewards pages in a real browser (Playwright driving Debian's Chromium) on a phone
(390x844) and a desktop (1440x900): a member chooses points for a money-off reward, confirms with
a double click (one coupon), sees the coupon with its QR and barcode, and copies the referral
link. On every page: axe-core finds no serious or critical violation and the CSP blocks nothing.

Screenshots go to $PORTAL_SCREENSHOTS (else the test's tmp_path)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import Error as PlaywrightError

from loyalty import services as ledger
from portal import services as portal_services
from rewards.models import Redemption, Reward
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.portal.conftest import link_of
from tests.rewards.factories import RewardFactory
from tiers.services import tier_create
from workflows.models import Referral, ReferralSettings

from .test_portal_browser import CHROMIUM, VIEWPORTS, browser, check_page, shots  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not __import__("shutil").which(CHROMIUM), reason="Debian's chromium is not installed"),
]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_member_redeems_a_reward_sees_the_coupon_and_copies_the_referral_link(
    browser,  # noqa: F811
    live_server,
    shots,  # noqa: F811
    viewport,
):
    program = ProgramFactory(name="Corner Bakery", points_name="crumbs", brand_color="#B5179E", currency="EUR")
    gold = tier_create(program=program, name="Gold", position=2, threshold=Decimal(5000))
    RewardFactory(program=program, name="Free croissant", cost_points=300, valid_days=30, position=1)
    RewardFactory(
        program=program,
        name="Crumbs as money off",
        kind=Reward.Kind.POINTS_FOR_AMOUNT,
        value=Decimal("0.01"),
        cost_points=None,
        points_step=100,
        points_min=100,
        points_max=1000,
        position=2,
        description="Spend crumbs on your next order.",
    )
    RewardFactory(program=program, name="Baking class", cost_points=900, min_tier=gold, position=3)
    RewardFactory(program=program, name="Tote bag", cost_points=100, stock=0, position=4)
    ReferralSettings.objects.create(program=program, is_active=True, referrer_points=500, friend_points=250)
    member = MemberFactory(program=program, first_name="Léa", email="lea@example.com")
    ledger.points_adjust(program=program, member_id=member.pk, points=1200, reason="test", source="test")
    friend = MemberFactory(program=program, first_name="Sam", last_name="Private")
    Referral.objects.create(program=program, referrer=member, friend=friend, created_at=friend.enrolled_at)

    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-GB", timezone_id="Europe/Paris")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    base = f"{live_server.url}/p/{program.slug}"

    portal_services.login_link_send(program=program, email=member.email)
    page.goto(f"{live_server.url}{link_of(member)}")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")

    # The catalog: costs, facts, and the reasons of the unavailable ones.
    page.get_by_role("link", name="Rewards", exact=True).click()
    page.wait_for_url(f"{base}/rewards")
    assert page.get_by_text("For Gold members and above.").is_visible()
    assert page.get_by_text("Out of stock.").is_visible()
    check_page(page, f"{viewport}-rewards-1-catalog", shots, problems)

    # Points as money off: choose 700 crumbs (7.00 EUR), confirm with a double click.
    page.get_by_label("Crumbs to spend").select_option("700")
    page.locator("form.redeem").filter(has=page.get_by_label("Crumbs to spend")).get_by_role(
        "button", name="Redeem"
    ).click()
    page.wait_for_url(f"{base}/rewards/*/redeem?points=700")
    assert page.get_by_role("heading", name="Confirm your reward").is_visible()
    assert page.get_by_text("7.00 EUR off").is_visible()
    check_page(page, f"{viewport}-rewards-2-confirm", shots, problems)
    page.get_by_role("button", name="Yes, redeem it").dblclick()
    # The second submission aborts the first one's navigation (ERR_ABORTED): wait for the one
    # that lands.
    for _attempt in range(3):
        try:
            page.wait_for_url(f"{base}/coupons/*")
            break
        except PlaywrightError:
            continue
    page.wait_for_load_state("load")
    assert "/coupons/" in page.url
    assert Redemption.objects.filter(member=member).count() == 1
    coupon = Redemption.objects.get(member=member)
    assert coupon.points == 700

    # The coupon, large for the till: the code, its QR and its barcode drawn.
    assert page.get_by_text(coupon.code, exact=True).is_visible()
    qr = page.get_by_role("img", name=f"QR code of coupon {coupon.code}")
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.get_by_role("img", name=f"Barcode of coupon {coupon.code}").evaluate("img => img.naturalWidth > 0")
    check_page(page, f"{viewport}-rewards-3-coupon", shots, problems)
    page.get_by_role("link", name="My coupons", exact=True).click()
    page.wait_for_url(f"{base}/coupons")
    assert page.get_by_text("Ready to use").is_visible()
    check_page(page, f"{viewport}-rewards-4-my-coupons", shots, problems)

    # Refer a friend: copy the link with the button (a static script; the CSP allows it).
    page.get_by_role("link", name="Refer a friend").click()
    page.wait_for_url(f"{base}/refer")
    assert page.get_by_text("Sam", exact=True).is_visible()
    assert page.get_by_text("Private").count() == 0
    page.get_by_role("button", name="Copy link").click()
    page.get_by_text("Copied").wait_for(state="visible", timeout=30_000)  # the clipboard promise settles later
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == f"{base}/join?ref={member.referral_code}"
    check_page(page, f"{viewport}-rewards-5-refer", shots, problems)
    context.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_member_with_many_coupons_pages_through_them(browser, live_server, shots, viewport):  # noqa: F811
    program = ProgramFactory(name="Corner Bakery", points_name="crumbs", brand_color="#B5179E", currency="EUR")
    reward = RewardFactory(program=program, name="Free croissant", cost_points=1, valid_days=30, position=1)
    member = MemberFactory(program=program, first_name="Léa", email="lea@example.com")
    ledger.points_adjust(program=program, member_id=member.pk, points=100, reason="test", source="test")
    from rewards import services as reward_services

    codes = [
        reward_services.reward_redeem(program=program, member=member, reward=reward).redemption.code for _ in range(45)
    ]
    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-GB", timezone_id="Europe/Paris")
    page = context.new_page()
    page.set_default_timeout(60_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    base = f"{live_server.url}/p/{program.slug}"
    portal_services.login_link_send(program=program, email=member.email)
    page.goto(f"{live_server.url}{link_of(member)}")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    page.get_by_role("link", name="My coupons", exact=True).click()
    page.wait_for_url(f"{base}/coupons")
    assert page.get_by_text("You have 45 coupons, newest first.").is_visible()
    assert page.get_by_text(codes[-1]).is_visible()
    pager = page.get_by_role("navigation", name="Pages of coupons")
    assert pager.get_by_text("Page 1 of 3").is_visible()
    check_page(page, f"{viewport}-coupons-page-1", shots, problems)
    pager.get_by_role("link", name="Next").click()
    page.wait_for_url(f"{base}/coupons?page=2")
    page.get_by_text("Page 2 of 3").wait_for(state="visible")
    assert page.get_by_text(codes[-21]).is_visible()
    check_page(page, f"{viewport}-coupons-page-2", shots, problems)
    page.get_by_role("navigation", name="Pages of coupons").get_by_role("link", name="Previous").click()
    page.wait_for_url(f"{base}/coupons?page=1")
    page.get_by_text("Page 1 of 3").wait_for(state="visible")
    context.close()
