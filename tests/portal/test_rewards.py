"""The portal's rewards pages: the catalog with reasons, redeeming through a confirmation step
(once per form, whatever the clicks), points as money off in steps, my coupons with QR and
barcode, refer a friend; only the logged-in member's data; at most 10 SQL statements a page."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyalty import services as ledger
from loyalty.models import LedgerEntry
from rewards import services as reward_services
from rewards.models import Redemption, Reward
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.rewards.factories import RewardFactory
from tiers.services import tier_create
from workflows.models import Referral, ReferralSettings

from .conftest import log_in

pytestmark = pytest.mark.django_db

MAX_STATEMENTS = 10


def give(member, points):
    ledger.points_adjust(program=member.program, member_id=member.pk, points=points, reason="test", source="test")
    member.refresh_from_db()


@pytest.fixture
def program(db):
    return ProgramFactory(name="Bean Club", points_name="beans", currency="EUR")


@pytest.fixture
def member(program):
    member = MemberFactory(program=program, first_name="Ada")
    give(member, 1000)
    return member


@pytest.fixture
def catalog(program):
    gold = tier_create(program=program, name="Gold", position=2, threshold=Decimal(1000))
    return {
        "espresso": RewardFactory(program=program, name="Free espresso", cost_points=100, position=1, valid_days=30),
        "cake": RewardFactory(program=program, name="Cake", cost_points=5000, position=2),
        "gold": RewardFactory(program=program, name="Gold mug", cost_points=100, min_tier=gold, position=3),
        "gone": RewardFactory(program=program, name="Tote bag", cost_points=100, stock=1, position=4),
        "once": RewardFactory(program=program, name="Welcome gift", cost_points=10, per_member_limit=1, position=5),
        "money": RewardFactory(
            program=program,
            name="Beans as money",
            kind=Reward.Kind.POINTS_FOR_AMOUNT,
            value=Decimal("0.01"),
            cost_points=None,
            points_step=100,
            points_min=200,
            points_max=800,
            position=6,
        ),
    }


def confirm_page(client, program, reward, **params):
    response = client.get(f"/p/{program.slug}/rewards/{reward.pk}/redeem", params)
    assert response.status_code == 200, response.content
    token = re.search(r'name="token" value="([0-9a-f]{32})"', response.content.decode()).group(1)
    return response, token


def test_the_catalog_shows_costs_facts_and_each_reason_in_words(client, program, member, catalog):
    other = MemberFactory(program=program)
    give(other, 500)
    reward_services.reward_redeem(program=program, member=other, reward=catalog["gone"])
    reward_services.reward_redeem(program=program, member=member, reward=catalog["once"])
    log_in(client, member)
    response = client.get(f"/p/{program.slug}/rewards")
    assert response.status_code == 200
    text = response.content.decode()
    assert "Free espresso" in text
    assert "100 beans" in text
    assert "Coupon valid 30 days" in text
    assert "You need 4,010 beans more." in text
    assert "For Gold members and above." in text
    assert "Out of stock." in text
    assert "0 left" in text
    assert "You have redeemed it 1 time, the most allowed." in text
    # Points as money off: the choices in steps, within the member's points, with their value.
    assert '<option value="200">200 beans = 2.00 EUR</option>' in text
    assert '<option value="800">800 beans = 8.00 EUR</option>' in text
    assert 'value="900"' not in text
    assert 'value="250"' not in text


def test_the_catalog_names_the_missing_points(client, program, member, catalog):
    log_in(client, member)
    text = client.get(f"/p/{program.slug}/rewards").content.decode()
    cake = text[text.index("Cake") :]
    assert "Not available" in cake[:800]
    assert "more." in cake[:800]


def test_redeeming_goes_through_a_confirmation_then_shows_the_coupon(client, program, member, catalog):
    log_in(client, member)
    response, token = confirm_page(client, program, catalog["espresso"])
    text = response.content.decode()
    assert "Confirm your reward" in text
    assert "Free espresso" in text
    assert "900 beans" in text
    assert Redemption.objects.count() == 0  # the GET wrote nothing
    response = client.post(f"/p/{program.slug}/rewards/{catalog['espresso'].pk}/redeem", {"token": token})
    coupon = Redemption.objects.get(member=member)
    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/coupons/{coupon.pk}"
    member.refresh_from_db()
    assert member.available == 900
    page = client.get(response["Location"]).content.decode()
    assert coupon.code in page
    assert 'src="data:image/svg+xml' in page  # QR and barcode as data: images (the CSP allows them)
    assert "Here is your coupon." in page


def test_a_double_click_issues_one_coupon(client, program, member, catalog):
    log_in(client, member)
    _response, token = confirm_page(client, program, catalog["espresso"])
    url = f"/p/{program.slug}/rewards/{catalog['espresso'].pk}/redeem"
    first = client.post(url, {"token": token})
    second = client.post(url, {"token": token})
    assert first["Location"] == second["Location"]
    assert Redemption.objects.filter(member=member).count() == 1
    assert LedgerEntry.objects.filter(member=member, kind=LedgerEntry.Kind.REDEEM).count() == 1
    # A new confirmation page is a new token: a second coupon on purpose is allowed.
    _response, token2 = confirm_page(client, program, catalog["espresso"])
    assert token2 != token
    client.post(url, {"token": token2})
    assert Redemption.objects.filter(member=member).count() == 2


def test_points_as_money_off_spends_the_chosen_points(client, program, member, catalog):
    log_in(client, member)
    response, token = confirm_page(client, program, catalog["money"], points=500)
    assert "5.00 EUR off" in response.content.decode()
    client.post(f"/p/{program.slug}/rewards/{catalog['money'].pk}/redeem", {"token": token, "points": "500"})
    coupon = Redemption.objects.get(member=member)
    assert coupon.points == 500
    assert coupon.value == Decimal("5.00")


@pytest.mark.parametrize("points", ["250", "100", "900", "abc", ""])
def test_points_off_the_steps_are_a_message_not_a_coupon(client, program, member, catalog, points):
    log_in(client, member)
    url = f"/p/{program.slug}/rewards/{catalog['money'].pk}/redeem"
    response = client.post(url, {"token": "a" * 32, "points": points}, follow=True)
    assert response.status_code == 200
    assert "Choose a number of beans from the list." in response.content.decode()
    assert Redemption.objects.count() == 0
    if points:
        response = client.get(url, {"points": points}, follow=True)
        assert response.status_code == 200
        assert "Choose a number of beans from the list." in response.content.decode()


def test_not_enough_points_and_out_of_stock_are_page_messages(client, program, member, catalog):
    log_in(client, member)
    # The member spends their points elsewhere between the confirmation and the click.
    _response, token = confirm_page(client, program, catalog["espresso"])
    ledger.points_adjust(program=program, member_id=member.pk, points=-950, reason="test", source="test")
    response = client.post(f"/p/{program.slug}/rewards/{catalog['espresso'].pk}/redeem", {"token": token}, follow=True)
    assert response.status_code == 200
    assert "You do not have enough beans for this reward." in response.content.decode()
    give(member, 950)
    # The last unit goes to someone else meanwhile.
    _response, token = confirm_page(client, program, catalog["gone"])
    other = MemberFactory(program=program)
    give(other, 500)
    reward_services.reward_redeem(program=program, member=other, reward=catalog["gone"])
    response = client.post(f"/p/{program.slug}/rewards/{catalog['gone'].pk}/redeem", {"token": token}, follow=True)
    assert response.status_code == 200
    assert "Out of stock." in response.content.decode()
    # The confirmation page itself refuses an unavailable reward with its reason.
    response = client.get(f"/p/{program.slug}/rewards/{catalog['gold'].pk}/redeem", follow=True)
    assert "For Gold members and above." in response.content.decode()
    assert Redemption.objects.filter(member=member).count() == 0


def test_a_missing_or_forged_token_redeems_nothing(client, program, member, catalog):
    log_in(client, member)
    url = f"/p/{program.slug}/rewards/{catalog['espresso'].pk}/redeem"
    for data in ({}, {"token": "not-a-token"}, {"token": "A" * 32}):
        response = client.post(url, data, follow=True)
        assert response.status_code == 200
        assert "Please choose the reward again." in response.content.decode()
    assert Redemption.objects.count() == 0


def test_another_programs_reward_is_not_found(client, program, member, catalog):
    elsewhere = RewardFactory(program=ProgramFactory(), cost_points=1)
    log_in(client, member)
    assert client.get(f"/p/{program.slug}/rewards/{elsewhere.pk}/redeem").status_code == 404
    assert client.post(f"/p/{program.slug}/rewards/{elsewhere.pk}/redeem", {"token": "a" * 32}).status_code == 404
    assert Redemption.objects.count() == 0


def test_my_coupons_newest_first_with_status_and_expiry(client, program, member, catalog):
    now = timezone.now()
    old = reward_services.reward_redeem(
        program=program, member=member, reward=catalog["espresso"], now=now - dt.timedelta(days=40)
    ).redemption
    used = reward_services.reward_redeem(program=program, member=member, reward=catalog["espresso"]).redemption
    reward_services.redemption_use(program=program, code=used.code, order_id="ORD-1")
    cancelled = reward_services.reward_redeem(program=program, member=member, reward=catalog["once"]).redemption
    reward_services.redemption_cancel(program=program, code=cancelled.code)
    fresh = reward_services.reward_redeem(program=program, member=member, reward=catalog["espresso"]).redemption
    log_in(client, member)
    text = client.get(f"/p/{program.slug}/coupons").content.decode()
    positions = [text.index(c.code) for c in (fresh, cancelled, used, old)]
    assert positions == sorted(positions)
    assert "Expired" in text
    assert "Used" in text
    assert "Cancelled" in text
    assert "Ready to use" in text
    assert "Use it before" in text
    # An expired coupon shows no QR to scan.
    page = client.get(f"/p/{program.slug}/coupons/{old.pk}").content.decode()
    assert "Expired on" in page
    assert "data:image/svg+xml" not in page


def test_another_members_coupon_is_not_found(client, program, member, catalog):
    other = MemberFactory(program=program)
    give(other, 500)
    theirs = reward_services.reward_redeem(program=program, member=other, reward=catalog["espresso"]).redemption
    log_in(client, member)
    assert client.get(f"/p/{program.slug}/coupons/{theirs.pk}").status_code == 404
    assert theirs.code not in client.get(f"/p/{program.slug}/coupons").content.decode()


def test_another_programs_member_sees_nothing_of_this_program(client, program, member, catalog):
    mine = reward_services.reward_redeem(program=program, member=member, reward=catalog["espresso"]).redemption
    elsewhere = ProgramFactory()
    stranger = MemberFactory(program=elsewhere)
    log_in(client, stranger)
    # Logged in to the other program only: this program's pages ask for a login.
    for path in ("rewards", "coupons", f"coupons/{mine.pk}", "refer", f"rewards/{catalog['espresso'].pk}/redeem"):
        response = client.get(f"/p/{program.slug}/{path}")
        assert response.status_code == 302
        assert response["Location"] == f"/p/{program.slug}/login"
    # On their own program's pages, this program's coupon is nobody's.
    assert client.get(f"/p/{elsewhere.slug}/coupons/{mine.pk}").status_code == 404


@pytest.mark.parametrize("path", ["rewards", "coupons", "coupons/1", "refer", "rewards/1/redeem"])
def test_the_pages_need_a_login(client, program, path):
    response = client.get(f"/p/{program.slug}/{path}")
    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/login"
    response = client.post(f"/p/{program.slug}/rewards/1/redeem", {"token": "a" * 32})
    assert response["Location"] == f"/p/{program.slug}/login"


def test_refer_a_friend_shows_link_offer_and_referrals_with_first_names(client, program, member):
    ReferralSettings.objects.create(program=program, is_active=True, referrer_points=500, friend_points=250)
    now = timezone.now()
    for first, last, status in (
        ("Bob", "Secretname", "pending"),
        ("Cleo", "Hidden", "rewarded"),
        ("Dan", "X", "rejected"),
    ):
        friend = MemberFactory(program=program, first_name=first, last_name=last)
        Referral.objects.create(
            program=program, referrer=member, friend=friend, status=status, created_at=now, referrer_points=500
        )
    stranger_friend = MemberFactory(program=program, first_name="Eve")
    Referral.objects.create(
        program=program, referrer=MemberFactory(program=program), friend=stranger_friend, created_at=now
    )
    log_in(client, member)
    text = client.get(f"/p/{program.slug}/refer").content.decode()
    assert f"/p/{program.slug}/join?ref={member.referral_code}" in text
    assert member.referral_code in text
    assert "250 beans" in text
    assert "500 beans" in text
    assert "Bob" in text
    assert "Cleo" in text
    assert "Dan" in text
    assert "Secretname" not in text
    assert "Hidden" not in text
    assert "Eve" not in text
    assert "Waiting for their first purchase" in text
    assert "Rewarded" in text
    assert "Not eligible" in text
    assert 'src="/static/portal/copy.js"' in text
    assert "<script>" not in text


def test_refer_a_friend_without_an_offer_still_gives_the_link(client, program, member):
    log_in(client, member)
    text = client.get(f"/p/{program.slug}/refer").content.decode()
    assert "There is no referral offer at the moment" in text
    assert f"join?ref={member.referral_code}" in text


def test_each_page_takes_at_most_ten_statements(client, program, member, catalog):
    ReferralSettings.objects.create(program=program, is_active=True)
    for _n in range(5):
        friend = MemberFactory(program=program)
        Referral.objects.create(program=program, referrer=member, friend=friend, created_at=timezone.now())
    coupons = [
        reward_services.reward_redeem(program=program, member=member, reward=catalog["espresso"]).redemption
        for _n in range(5)
    ]
    log_in(client, member)
    paths = ["rewards", "coupons", f"coupons/{coupons[0].pk}", "refer", f"rewards/{catalog['money'].pk}/redeem"]
    for path in paths:
        client.get(f"/p/{program.slug}/{path}")  # warm the per-process caches
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/p/{program.slug}/{path}")
        assert response.status_code == 200, path
        assert len(queries) <= MAX_STATEMENTS, (path, [q["sql"] for q in queries.captured_queries])


def test_the_pages_carry_the_content_security_policy(client, program, member, catalog):
    coupon = reward_services.reward_redeem(program=program, member=member, reward=catalog["espresso"]).redemption
    log_in(client, member)
    for path in ("rewards", "coupons", f"coupons/{coupon.pk}", "refer", f"rewards/{catalog['espresso'].pk}/redeem"):
        response = client.get(f"/p/{program.slug}/{path}")
        assert "default-src 'none'" in response["Content-Security-Policy"], path
        assert "img-src 'self' https: data:" in response["Content-Security-Policy"]


def test_a_not_found_coupon_or_reward_is_a_portal_page_with_the_policy(client, program, member):
    log_in(client, member)
    for path in ("coupons/999999", "rewards/999999/redeem"):
        response = client.get(f"/p/{program.slug}/{path}")
        assert response.status_code == 404
        assert "default-src 'none'" in response["Content-Security-Policy"]
        assert "This page does not exist, or it is not yours." in response.content.decode()


def test_the_pages_speak_french(client, program, member, catalog):
    member.language = "fr"
    member.save(update_fields=["language"])
    log_in(client, member)
    text = client.get(f"/p/{program.slug}/rewards").content.decode()
    assert "Pour les membres Gold et au-delà." in text
    assert "Il vous manque" in text
    assert "Parrainer un ami" in text


def _codes_on(text: str, codes: set[str]) -> list[str]:
    return [code for code in codes if code in text]


def test_my_coupons_come_in_pages_with_previous_and_next(client, program, member):
    reward = RewardFactory(program=program, name="Sticker", cost_points=1, position=1)
    made = [reward_services.reward_redeem(program=program, member=member, reward=reward).redemption for _n in range(55)]
    codes = {c.code for c in made}
    log_in(client, member)
    seen: list[str] = []
    pages = []
    for number in (1, 2, 3):
        response = client.get(f"/p/{program.slug}/coupons", {"page": number})
        assert response.status_code == 200
        text = response.content.decode()
        pages.append(text)
        seen += _codes_on(text, codes)
        assert f"Page {number} of 3" in text
        assert "You have 55 coupons" in text
    assert sorted(seen) == sorted(codes)  # every coupon once, none twice
    assert len(_codes_on(pages[0], codes)) == 20
    assert len(_codes_on(pages[2], codes)) == 15
    assert made[-1].code in pages[0]  # newest first
    assert made[0].code in pages[2]
    assert 'href="?page=2" rel="next"' in pages[0]
    assert 'rel="prev"' not in pages[0]
    assert 'href="?page=1" rel="prev"' in pages[1]
    assert 'href="?page=3" rel="next"' in pages[1]
    assert 'rel="next"' not in pages[2]
    # Nonsense or out-of-range numbers are a page, never an error.
    assert "Page 1 of 3" in client.get(f"/p/{program.slug}/coupons", {"page": "x"}).content.decode()
    assert "Page 3 of 3" in client.get(f"/p/{program.slug}/coupons", {"page": "999"}).content.decode()
    with CaptureQueriesContext(connection) as queries:
        client.get(f"/p/{program.slug}/coupons", {"page": 2})
    assert len(queries) <= MAX_STATEMENTS


def test_a_short_list_of_coupons_has_no_pager(client, program, member, catalog):
    reward_services.reward_redeem(program=program, member=member, reward=catalog["espresso"])
    log_in(client, member)
    text = client.get(f"/p/{program.slug}/coupons").content.decode()
    assert "Page 1 of" not in text
    assert 'rel="next"' not in text


def test_my_referrals_come_in_pages(client, program, member):
    ReferralSettings.objects.create(program=program, is_active=True)
    start = timezone.now() - dt.timedelta(days=200)
    names = []
    for n in range(105):
        name = f"Friend{n:03d}"
        names.append(name)
        friend = MemberFactory(program=program, first_name=name)
        Referral.objects.create(
            program=program, referrer=member, friend=friend, created_at=start + dt.timedelta(hours=n)
        )
    log_in(client, member)
    seen = []
    texts = []
    for number in (1, 2, 3):
        text = client.get(f"/p/{program.slug}/refer", {"page": number}).content.decode()
        texts.append(text)
        seen += [name for name in names if f">{name}<" in text]
        assert f"Page {number} of 3" in text
        assert "105 friends joined with your link" in text
        # The link and the offer stay on every page.
        assert f"join?ref={member.referral_code}" in text
    assert sorted(seen) == names
    assert ">Friend104<" in texts[0]
    assert ">Friend000<" in texts[2]
    assert len([n for n in names if f">{n}<" in texts[2]]) == 5
    assert 'href="?page=2#referrals-title" rel="next"' in texts[0]
    assert 'href="?page=2#referrals-title" rel="prev"' in texts[2]
    with CaptureQueriesContext(connection) as queries:
        client.get(f"/p/{program.slug}/refer", {"page": 3})
    assert len(queries) <= MAX_STATEMENTS


def test_the_pager_speaks_french(client, program, member):
    reward = RewardFactory(program=program, name="Sticker", cost_points=1, position=1)
    for _n in range(21):
        reward_services.reward_redeem(program=program, member=member, reward=reward)
    log_in(client, member)
    client.post(f"/p/{program.slug}/language", {"language": "fr", "next": f"/p/{program.slug}/coupons"})
    text = client.get(f"/p/{program.slug}/coupons", {"page": 2}).content.decode()
    assert "Page 2 sur 2" in text
    assert "Précédente" in text
