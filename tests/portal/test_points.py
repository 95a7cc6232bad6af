"""The "My points" page: balances, pending and expiring lots with dates, tier, readable
history; only the logged-in member's data; at most 10 SQL statements."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver
from django.utils import timezone

from loyalty import services as ledger
from loyalty.models import Program
from rewards import services as reward_services
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.rewards.factories import RewardFactory
from tiers.services import tier_create
from workflows import services as workflow_services
from workflows.models import EarningRule

from .conftest import log_in

pytestmark = pytest.mark.django_db

MAX_STATEMENTS = 10


@pytest.fixture
def program(db):
    program = ProgramFactory(
        name="Bean Club",
        points_name="beans",
        expiry_days=60,
        pending_days=14,
        tier_metric=Program.TierMetric.POINTS_EARNED,
        tier_window=Program.TierWindow.ROLLING,
        tier_window_days=365,
        timezone="Europe/Paris",
    )
    EarningRule.objects.create(program=program, name="Base points", trigger="purchase", kind="per_amount")
    tier_create(program=program, name="Silver", position=1, threshold=Decimal(100), benefits="Free refills")
    tier_create(program=program, name="Gold", position=2, threshold=Decimal(1000))
    return program


def purchase(program, member, order_id, amount, days_ago):
    when = timezone.now() - dt.timedelta(days=days_ago)
    workflow_services.activity_report(
        program=program,
        member=member,
        type="purchase",
        occurred_at=when,
        now=when,  # reported when it happened (a backdated report would be pending from today)
        order_id=order_id,
        amount=Decimal(amount),
        currency="EUR",
    )


@pytest.fixture
def rich_member(program):
    """Purchases (old ones available, a recent one pending), a redemption, a staff adjustment."""
    member = MemberFactory(program=program)
    purchase(program, member, "ORD-OLD", "150", days_ago=40)
    purchase(program, member, "ORD-MID", "80", days_ago=20)
    purchase(program, member, "ORD-NEW", "30", days_ago=2)
    reward = RewardFactory(program=program, name="Free espresso", cost_points=50)
    reward_services.reward_redeem(program=program, member=member, reward=reward)
    ledger.points_adjust(
        program=program, member_id=member.pk, points=5, reason="Internal note: VIP angry", source="test"
    )
    member.refresh_from_db()
    return member


def test_my_points_shows_balances_lots_tier_and_history(client, program, rich_member):
    log_in(client, rich_member)
    response = client.get(f"/p/{program.slug}/")
    text = response.content.decode()
    assert response.status_code == 200
    assert "Available now" in text
    assert f'<span class="number">{rich_member.available}</span> beans' in text
    assert "30 beans" in text
    assert "available on" in text
    assert "expire on" in text  # the lots of 40 and 20 days ago expire within 90 days
    assert "Purchase, order ORD-OLD" in text
    assert "Reward: Free espresso" in text
    assert "Points added by our team" in text
    assert "Internal note" not in text  # staff reasons stay internal
    assert "Silver" in text
    assert "Free refills" in text
    assert "Next: Gold" in text
    assert "<progress" in text


def test_my_points_never_shows_another_members_data(client, program, member):
    other = MemberFactory(program=program, first_name="Zed")
    purchase(program, other, "SECRET-ORDER", "999", days_ago=30)
    log_in(client, member)
    text = client.get(f"/p/{program.slug}/").content.decode()
    assert "SECRET-ORDER" not in text
    assert "999" not in text
    assert "Zed" not in text
    # No parameter names another member: the page is always the session's member.
    assert "SECRET-ORDER" not in client.get(f"/p/{program.slug}/?member={other.pk}&page=1").content.decode()


def test_my_points_needs_a_login(client, program):
    response = client.get(f"/p/{program.slug}/")
    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/login"


def test_my_points_takes_at_most_ten_statements(client, program, rich_member):
    for n in range(30):  # more history than one page
        purchase(program, rich_member, f"BULK-{n}", "10", days_ago=30 + n)
    log_in(client, rich_member)
    client.get(f"/p/{program.slug}/")  # warm the per-process caches
    for page in (1, 2):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/p/{program.slug}/?page={page}")
        assert response.status_code == 200
        assert len(queries) <= MAX_STATEMENTS, [q["sql"] for q in queries.captured_queries]


def test_history_pages_go_back_in_time(client, program, rich_member):
    for n in range(25):
        purchase(program, rich_member, f"BULK-{n:02d}", "10", days_ago=30)
    log_in(client, rich_member)
    first = client.get(f"/p/{program.slug}/").content.decode()
    second = client.get(f"/p/{program.slug}/?page=2").content.decode()
    assert "BULK-24" in first
    assert "BULK-24" not in second
    assert "ORD-OLD" in second
    assert "Older" in first
    assert "Newer" in second
    assert client.get(f"/p/{program.slug}/?page=abc").status_code == 200


def test_the_page_speaks_the_members_language_then_the_programs(client, program, member):
    Program.objects.filter(pk=program.pk).update(language="fr")
    program.refresh_from_db()
    log_in(client, member)
    assert "Disponibles maintenant" in client.get(f"/p/{program.slug}/").content.decode()
    member.language = "en"
    member.save(update_fields=["language"])
    assert "Available now" in client.get(f"/p/{program.slug}/").content.decode()


def test_the_language_can_be_switched_and_stays_on_the_portal(client, program, member):
    log_in(client, member)
    response = client.post(f"/p/{program.slug}/language", {"language": "fr", "next": f"/p/{program.slug}/?page=1"})
    assert response["Location"] == f"/p/{program.slug}/?page=1"
    page = client.get(f"/p/{program.slug}/")
    assert page["Content-Language"] == "fr"
    assert '<html lang="fr">' in page.content.decode()
    response = client.post(f"/p/{program.slug}/language", {"language": "en", "next": "https://evil.example/"})
    assert response["Location"] == f"/p/{program.slug}/"


def test_the_brand_colour_comes_in_a_nonced_style_with_a_readable_text_colour(client, program, member):
    Program.objects.filter(pk=program.pk).update(brand_color="#FFE066")  # light yellow
    response = client.get(f"/p/{program.slug}/login")
    text = response.content.decode()
    nonce = response["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">' in text
    assert "--brand:#FFE066;--on-brand:#1f2328" in text
    assert "<script" not in text


def test_every_portal_page_carries_the_content_security_policy(client, program, member):
    log_in(client, member)
    patterns = get_resolver().url_patterns
    portal = next(p for p in patterns if getattr(p, "namespace", None) == "portal")
    assert portal.url_patterns
    for pattern in portal.url_patterns:
        route = re.sub(r"<int:\w+>", "1", str(pattern.pattern).replace("<slug:slug>", program.slug))
        for method in (client.get, client.post):
            response = method(f"/p/{route}")
            assert "default-src 'none'" in response.get("Content-Security-Policy", ""), (route, response.status_code)
