"""The portal's card pages (issue 12 §1 and the wallet part of §3): claim a card with its PIN,
My card with its QR code, barcode and wallet buttons, the wallet downloads, the generated
logo, How to earn and the program terms. Only the logged-in member's cards; at most 10 SQL
statements per page."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cards import numbers
from cards.models import Card
from cards.services import PIN_MAX_FAILURES
from loyalty.models import Member
from loyalty.services.points import points_adjust
from portal import wallet
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.portal.test_wallet import _fresh_credentials, apple_settings, google_settings, pki  # noqa: F401
from tiers.services import tier_create
from workflows.customer_text import rule_customer_text
from workflows.models import EarningRule

from .conftest import log_in

pytestmark = pytest.mark.django_db

MAX_STATEMENTS = 10


@pytest.fixture
def program(db):
    return ProgramFactory(name="Bean Club", slug="bean-club", points_name="beans", currency="EUR")


@pytest.fixture
def member(program):
    return MemberFactory(program=program, first_name="Léa", email="lea@example.com")


@pytest.fixture
def logged_in(client, member):
    log_in(client, member)
    return client


@pytest.fixture
def anonymous_card(program):
    """A card used at the till before anyone claimed it: an anonymous member with 120 beans."""
    anonymous = MemberFactory(
        program=program, external_id=None, email="", first_name="", last_name="", enrollment_channel=Member.Channel.CARD
    )
    points_adjust(program=program, member_id=anonymous.pk, points=120, reason="till", source="test")
    return CardFactory(member=anonymous)


def url(program, name, *args):
    return reverse(f"portal:{name}", args=[program.slug, *args])


def claim(client, program, number, pin):
    return client.post(url(program, "card_claim"), {"number": number, "pin": pin})


def count_statements(client, path):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    return response, len(queries)


# --- claim a card -------------------------------------------------------------------------------


def test_claiming_an_anonymous_card_moves_its_points_to_the_member(logged_in, program, member, anonymous_card):
    grouped_number = " ".join(anonymous_card.number[i : i + 4] for i in range(0, 16, 4))
    response = claim(logged_in, program, grouped_number, numbers.pin_for(anonymous_card.number))
    assert response.status_code == 302
    assert response["Location"] == url(program, "card")
    anonymous_card.refresh_from_db()
    member.refresh_from_db()
    assert anonymous_card.member_id == member.pk
    assert anonymous_card.claimed_at is not None
    assert member.available == 120
    page = logged_in.get(response["Location"])
    assert f"The card ending in {anonymous_card.number[-4:]} is yours now." in page.content.decode()
    assert grouped_number in page.content.decode()
    # The history says where the points came from, not "another member".
    history = logged_in.get(url(program, "home")).content.decode()
    assert f"Points from your card ending in {anonymous_card.number[-4:]}" in history
    assert "another member" not in history


def test_claiming_an_unassigned_card_assigns_it(logged_in, program, member):
    stock = CardFactory(program=program)
    response = claim(logged_in, program, stock.number, numbers.pin_for(stock.number))
    assert response.status_code == 302
    stock.refresh_from_db()
    assert (stock.member_id, stock.status) == (member.pk, Card.Status.ACTIVE)


def test_a_wrong_pin_says_how_many_tries_are_left_then_that_the_card_is_locked(
    logged_in, program, member, anonymous_card
):
    wrong = "000000" if numbers.pin_for(anonymous_card.number) != "000000" else "111111"
    response = claim(logged_in, program, anonymous_card.number, wrong)
    assert response.status_code == 200
    assert f"{PIN_MAX_FAILURES - 1} tries left" in response.content.decode()
    for _ in range(PIN_MAX_FAILURES - 1):
        response = claim(logged_in, program, anonymous_card.number, wrong)
    assert "it is locked for 15 minutes" in response.content.decode()
    # Locked: even the right PIN is refused now.
    response = claim(logged_in, program, anonymous_card.number, numbers.pin_for(anonymous_card.number))
    assert "it is locked for 15 minutes" in response.content.decode()
    anonymous_card.refresh_from_db()
    assert anonymous_card.claimed_at is None


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("malformed", "This is not a valid card number"),
        ("unknown", "We know no card with this number"),
        ("other_program", "We know no card with this number"),
        ("claimed", "This card has already been claimed"),
        ("someone_elses", "This card has already been claimed"),
        ("blocked", "This card is blocked"),
    ],
)
def test_a_card_that_cannot_be_claimed_gets_a_clear_error(logged_in, program, member, case, message):
    if case == "malformed":
        number = "1234"
    elif case == "unknown":
        number = numbers.random_number(program.card_prefix, program.card_number_length)
    elif case == "other_program":
        number = CardFactory(program=ProgramFactory(card_prefix=program.card_prefix)).number
    elif case == "claimed":
        number = CardFactory(member=member, claimed_at=timezone.now()).number
    elif case == "someone_elses":
        number = CardFactory(member=MemberFactory(program=program)).number
    else:
        number = CardFactory(member=member, status=Card.Status.BLOCKED).number
    response = claim(logged_in, program, number, numbers.pin_for(number) if len(number) > 4 else "123456")
    assert response.status_code == 200
    assert message in response.content.decode()


def test_an_empty_form_asks_for_both_fields(logged_in, program):
    response = logged_in.post(url(program, "card_claim"), {"number": "", "pin": ""})
    assert response.status_code == 200
    assert response.context["form"].errors.keys() == {"number", "pin"}


def test_claims_are_rate_limited_per_ip(logged_in, program, settings):
    settings.PORTAL_RATE_PER_IP = "2/h"
    for _ in range(2):
        assert claim(logged_in, program, "1234", "123456").status_code == 200
    response = claim(logged_in, program, "1234", "123456")
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()


def test_claims_are_rate_limited_per_member(client, program, member, monkeypatch):
    monkeypatch.setattr("portal.views_card.CLAIM_RATE_PER_MEMBER", "1/h")
    log_in(client, member)
    assert claim(client, program, "1234", "123456").status_code == 200
    assert claim(client, program, "1234", "123456").status_code == 429


# --- My card ------------------------------------------------------------------------------------


def test_my_card_shows_the_grouped_number_qr_code_and_barcode(logged_in, program, member):
    card = CardFactory(member=member)
    response = logged_in.get(url(program, "card"))
    body = response.content.decode()
    assert response.status_code == 200
    assert " ".join(card.number[i : i + 4] for i in range(0, 16, 4)) in body
    assert body.count('src="data:image/svg+xml;base64,') == 2
    assert 'alt="QR code of card' in body
    assert 'alt="Barcode of card' in body
    # No wallet is configured by default: no buttons.
    assert "Add to Apple Wallet" not in body
    assert "Add to Google Wallet" not in body


def test_my_card_shows_only_the_members_active_cards(logged_in, program, member):
    mine = CardFactory(member=member)
    blocked = CardFactory(member=member, status=Card.Status.BLOCKED)
    theirs = CardFactory(member=MemberFactory(program=program))
    body = logged_in.get(url(program, "card")).content.decode()
    assert mine.number[-4:] in body
    assert blocked.number[:4] + " " + blocked.number[4:8] not in body
    assert theirs.number[:4] + " " + theirs.number[4:8] not in body


def test_a_member_without_a_card_is_told_and_sent_to_the_claim_form(logged_in, program):
    body = logged_in.get(url(program, "card")).content.decode()
    assert "You have no card yet" in body
    assert f'href="{url(program, "card_claim")}"' in body


def test_wallet_buttons_show_only_for_the_configured_wallets(
    logged_in,
    program,
    member,
    apple_settings,  # noqa: F811
):
    card = CardFactory(member=member)
    body = logged_in.get(url(program, "card")).content.decode()
    assert f'href="{url(program, "card_pkpass", card.pk)}"' in body
    assert "Add to Google Wallet" not in body


def test_google_button_shows_when_google_is_configured(logged_in, program, member, google_settings):  # noqa: F811
    card = CardFactory(member=member)
    body = logged_in.get(url(program, "card")).content.decode()
    assert f'href="{url(program, "card_google", card.pk)}"' in body
    assert "Add to Apple Wallet" not in body


def test_the_pkpass_of_the_members_card_is_served(logged_in, program, member, apple_settings):  # noqa: F811
    card = CardFactory(member=member)
    response = logged_in.get(url(program, "card_pkpass", card.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == wallet.PKPASS_CONTENT_TYPE
    assert response["Content-Disposition"] == 'attachment; filename="bean-club-card.pkpass"'
    assert response.content[:2] == b"PK"  # a zip


def test_the_google_link_of_the_members_card_redirects_to_google(
    logged_in,
    program,
    member,
    google_settings,  # noqa: F811
):
    card = CardFactory(member=member)
    response = logged_in.get(url(program, "card_google", card.pk))
    assert response.status_code == 302
    assert response["Location"].startswith("https://pay.google.com/gp/v/save/")


def test_wallet_downloads_are_404_when_not_configured(logged_in, program, member):
    card = CardFactory(member=member)
    assert logged_in.get(url(program, "card_pkpass", card.pk)).status_code == 404
    assert logged_in.get(url(program, "card_google", card.pk)).status_code == 404


# --- security -----------------------------------------------------------------------------------


def test_another_members_card_is_not_found(
    logged_in,
    program,
    member,
    apple_settings,  # noqa: F811
    google_settings,  # noqa: F811
):
    theirs = CardFactory(member=MemberFactory(program=program))
    elsewhere = CardFactory(member=MemberFactory(program=ProgramFactory()))
    blocked_own = CardFactory(member=member, status=Card.Status.BLOCKED)
    for card in (theirs, elsewhere, blocked_own):
        assert logged_in.get(url(program, "card_pkpass", card.pk)).status_code == 404
        assert logged_in.get(url(program, "card_google", card.pk)).status_code == 404
    assert logged_in.get(url(program, "card_pkpass", 999_999_999)).status_code == 404


def test_a_member_of_another_program_is_nobody_here(client, program):
    other = MemberFactory(program=ProgramFactory())
    CardFactory(member=other)
    log_in(client, other)
    response = client.get(url(program, "card"))
    assert response.status_code == 302
    assert response["Location"] == url(program, "login")


@pytest.mark.parametrize("page", ["card", "card_claim", "card_pkpass", "card_google"])
def test_pages_of_a_member_send_visitors_to_the_login_page(client, program, member, page):
    card = CardFactory(member=member)
    args = (card.pk,) if page in ("card_pkpass", "card_google") else ()
    response = client.get(url(program, page, *args))
    assert response.status_code == 302
    assert response["Location"] == url(program, "login")
    assert client.post(url(program, "card_claim"), {"number": card.number, "pin": "1"}).status_code == 302


def test_card_pages_carry_the_portal_policy(logged_in, program, member):
    CardFactory(member=member)
    response = logged_in.get(url(program, "card"))
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "img-src 'self' https: data:" in response["Content-Security-Policy"]
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]


# --- the wallet logo ----------------------------------------------------------------------------


def test_the_wallet_logo_is_a_public_png(client, program):
    response = client.get(f"/p/{program.slug}/wallet/logo.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content == wallet.program_logo_png(program)
    assert "public" in response["Cache-Control"]
    assert client.get("/p/no-such-program/wallet/logo.png").status_code == 404
    program.is_active = False
    program.save()
    assert client.get(f"/p/{program.slug}/wallet/logo.png").status_code == 404


# --- how to earn --------------------------------------------------------------------------------


def rule(program, **fields):
    values = {"name": "Rule", "trigger": "purchase", "kind": EarningRule.Kind.FIXED, "points": Decimal(10)}
    return EarningRule.objects.create(program=program, **{**values, **fields})


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"kind": "per_amount", "points": None}, "1 bean per EUR 1 spent"),
        ({"kind": "per_amount", "points": Decimal(2), "multiplier": Decimal(2)}, "4 beans per EUR 1 spent"),
        ({"kind": "per_amount", "points": Decimal("0.5")}, "0.5 beans per EUR 1 spent"),
        ({"kind": "per_item", "points": Decimal(5)}, "5 beans per item bought"),
        (
            {"kind": "per_category", "points": Decimal(3), "include_categories": ["coffee", "tea"]},
            "3 beans per EUR 1 spent on coffee, tea",
        ),
        ({"trigger": "signup", "points": Decimal(100)}, "100 beans when you join"),
        ({"trigger": "birthday", "points": Decimal(1000)}, "1,000 beans on your birthday"),
        ({"trigger": "tasting", "name": "Wine tasting", "points": Decimal(20)}, "20 beans: Wine tasting"),
        (
            {"kind": "per_amount", "points": None, "min_amount": Decimal(20), "channel": "online"},
            "1 bean per EUR 1 spent, on orders of EUR 20.00 or more, online",
        ),
        ({"customer_text": "  Double beans every Tuesday!  "}, "Double beans every Tuesday!"),
    ],
)
def test_rules_read_as_customer_sentences(program, fields, text):
    assert rule_customer_text(rule(program, **fields), program) == text


def test_how_to_earn_lists_the_rules_members_can_earn_with_now(client, program):
    now = timezone.now()
    gold = tier_create(program=program, name="Gold", position=1, threshold=Decimal(100))
    rule(program, kind="per_amount", points=None, priority=10)
    rule(program, trigger="signup", points=Decimal(50), customer_text="A welcome gift of 50 beans")
    weekend = rule(
        program, trigger="store_visit", points=Decimal(5), days_of_week=[5, 6], ends_at=now + dt.timedelta(days=30)
    )
    weekend.tiers.add(gold)
    rule(program, trigger="review", is_active=False)
    rule(program, trigger="social_share", ends_at=now - dt.timedelta(days=1))
    rule(program, trigger="referral", starts_at=now + dt.timedelta(days=1))
    rule(ProgramFactory(), trigger="purchase", customer_text="Another program's rule")
    response = client.get(url(program, "earn"))
    body = response.content.decode()
    assert response.status_code == 200
    assert [r.text for r in response.context["rules"]] == [
        "1 bean per EUR 1 spent",
        "A welcome gift of 50 beans",
        "5 beans when you visit one of our shops",
    ]
    assert "For Gold members" in body
    assert "On Saturday, Sunday" in body
    assert "Until " in body
    assert "Another program" not in body


def test_how_to_earn_in_french(client, program):
    program.language = "fr"
    program.save()
    rule(program, kind="per_amount", points=None)
    body = client.get(url(program, "earn")).content.decode()
    assert "1 bean par EUR 1 dépensé" in body


# --- terms --------------------------------------------------------------------------------------


def test_terms_are_shown_and_linked_from_the_footer(client, program):
    program.terms = "Points have no cash value.\n\nWe may change these terms."
    program.save()
    login_page = client.get(url(program, "login")).content.decode()
    assert f'href="{url(program, "terms")}"' in login_page
    response = client.get(url(program, "terms"))
    assert response.status_code == 200
    assert "<p>Points have no cash value.</p>" in response.content.decode()


def test_a_program_without_terms_has_no_link_and_says_so(client, program):
    assert url(program, "terms") not in client.get(url(program, "login")).content.decode()
    response = client.get(url(program, "terms"))
    assert response.status_code == 404
    assert "has not published terms" in response.content.decode()


def test_terms_are_escaped(client, program):
    program.terms = "<script>alert(1)</script>"
    program.save()
    body = client.get(url(program, "terms")).content.decode()
    assert "<script>alert" not in body


# --- statements ---------------------------------------------------------------------------------


def test_every_card_page_stays_within_10_statements(logged_in, program, member, anonymous_card):
    for _ in range(3):
        CardFactory(member=member)
    tier = tier_create(program=program, name="Gold", position=1, threshold=Decimal(100))
    for index in range(12):
        rule(program, trigger="purchase", points=Decimal(index + 1)).tiers.add(tier)
    program.terms = "Terms."
    program.save()
    for name in ("card", "card_claim", "earn", "terms"):
        response, statements = count_statements(logged_in, url(program, name))
        assert response.status_code == 200, name
        assert statements <= MAX_STATEMENTS, (name, statements)
    with CaptureQueriesContext(connection) as queries:
        response = claim(logged_in, program, anonymous_card.number, numbers.pin_for(anonymous_card.number))
    assert response.status_code == 302
    assert len(queries) <= 40  # the claim's writes (lock, transfer, events): bounded, not per page


def test_wallet_downloads_stay_within_10_statements(
    logged_in,
    program,
    member,
    apple_settings,  # noqa: F811
    google_settings,  # noqa: F811
):
    card = CardFactory(member=member)
    for name in ("card_pkpass", "card_google"):
        with CaptureQueriesContext(connection) as queries:
            response = logged_in.get(url(program, name, card.pk))
        assert response.status_code in (200, 302)
        assert len(queries) <= MAX_STATEMENTS, (name, len(queries))


# --- admin --------------------------------------------------------------------------------------


def test_staff_edit_a_rules_customer_text_and_see_what_members_read(client, program):
    client.force_login(StaffFactory(is_superuser=True))
    earning = rule(program, kind="per_amount", points=None)
    page = client.get(reverse("admin:workflows_earningrule_change", args=[earning.pk])).content.decode()
    assert 'name="customer_text"' in page
    assert "1 bean per EUR 1 spent" in page  # "Members read", beside the rule


def test_staff_edit_the_program_terms(client, program):
    client.force_login(StaffFactory(is_superuser=True))
    page = client.get(reverse("admin:loyalty_program_change", args=[program.pk])).content.decode()
    assert 'name="terms"' in page
