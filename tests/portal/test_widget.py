"""The shop widget (docs/portal.md, "The shop widget"): the signed token and each way it is
refused, the JSON panel and the framed page, their headers (CORS, CSP, frame-ancestors), the
assets, the admin's secret buttons, the `widget_token` command, statement counts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from loyalty import services as ledger
from loyalty.models import Program
from portal import widget
from rewards.models import Reward
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.rewards.factories import RewardFactory
from tiers.services import tier_create, tier_evaluate_member
from workflows.models import ReferralSettings

from .conftest import log_in

pytestmark = pytest.mark.django_db

MAX_STATEMENTS = 10


@pytest.fixture
def shop(db):
    """A program with its widget on, tiers, a catalog and a referral offer."""
    program = ProgramFactory(
        name="Bean Club",
        slug="bean-club",
        points_name="beans",
        brand_color="#B5179E",
        widget_origins="https://shop.example.com\nhttps://www.shop.example.com",
    )
    ledger.program_widget_secret_rotate(program=program)
    tier_create(program=program, name="Silver", position=1, threshold=Decimal(0))
    tier_create(program=program, name="Gold", position=2, threshold=Decimal(1000))
    RewardFactory(program=program, name="Free espresso", cost_points=100, position=1)
    RewardFactory(program=program, name="Mug", cost_points=350, position=2)  # 50 missing: nearly
    RewardFactory(program=program, name="Grinder", cost_points=5000, position=3)  # far: not shown
    RewardFactory(
        program=program,
        name="Beans off",
        kind=Reward.Kind.POINTS_FOR_AMOUNT,
        value=Decimal("0.01"),
        cost_points=None,
        points_step=100,
        points_min=100,
        position=4,
    )
    ReferralSettings.objects.create(program=program, is_active=True, referrer_points=500, friend_points=250)
    return program


@pytest.fixture
def customer(shop):
    member = MemberFactory(program=shop, external_id="shop-customer-42", first_name="Léa")
    ledger.points_adjust(program=shop, member_id=member.pk, points=300, reason="test", source="test")
    member.refresh_from_db()
    tier_evaluate_member(member=member)
    return member


def sign(secret: str, slug: str, ref: str, expires: int) -> str:
    """The documented algorithm, written again here from docs/portal.md (not with portal.widget)."""
    ref64 = base64.urlsafe_b64encode(ref.encode()).rstrip(b"=").decode()
    mac = hmac.new(secret.encode(), f"v1.{slug}.{ref64}.{expires}".encode(), hashlib.sha256).digest()
    return f"v1.{ref64}.{expires}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def data(client, program, token, **params):
    return client.get(f"/p/{program.slug}/widget/data", {"token": token, **params})


def error_code(response) -> str:
    return response.json()["error"]["code"]


def test_the_documented_signature_gives_the_members_panel(client, shop, customer, django_assert_max_num_queries):
    token = sign(shop.widget_secret, shop.slug, "shop-customer-42", int(time.time()) + 600)
    with django_assert_max_num_queries(MAX_STATEMENTS):
        response = data(client, shop, token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["balance"]["points"] == 300
    assert body["balance"]["text"] == "300 beans"
    assert body["greeting"] == "Hello Léa"
    assert body["tier"]["name"] == "Silver"
    assert body["tier"]["next_name"] == "Gold"
    assert 0 <= body["tier"]["percent"] <= 100
    names = [item["name"] for item in body["rewards"]["items"]]
    assert names == ["Free espresso", "Beans off", "Mug"]  # affordable now, then nearly
    assert [item["ready"] for item in body["rewards"]["items"]] == [True, True, False]
    assert body["rewards"]["items"][2]["text"] == "You need 50 beans more."
    assert body["referral"]["code"] == customer.referral_code
    assert body["referral"]["link"].endswith(f"/p/bean-club/join?ref={customer.referral_code}")
    assert "250 beans" in body["referral"]["text"]
    assert "500 beans" in body["referral"]["text"]
    assert body["portal"]["url"].endswith("/p/bean-club/")
    assert body["brand"]["color"] == "#B5179E"
    # Any origin may read it (the token is the credential; no cookies); nothing is cached.
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "no-store" in response["Cache-Control"]
    assert response["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in response["Content-Security-Policy"]


def test_the_panel_in_french(client, shop, customer):
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    body = data(client, shop, token, lang="fr").json()
    assert body["balance"]["label"] == "Votre solde"
    assert body["portal"]["text"] == "Ouvrir mon compte"
    assert body["rewards"]["title"] == "Récompenses à portée de main"


def test_a_forged_signature_is_refused(client, shop, customer):
    token = sign("not-the-secret", shop.slug, customer.external_id, int(time.time()) + 600)
    response = data(client, shop, token)
    assert response.status_code == 401
    assert error_code(response) == "token_invalid"
    assert "balance" not in response.json()


def test_an_expired_token_is_refused(client, shop, customer):
    token = sign(shop.widget_secret, shop.slug, customer.external_id, int(time.time()) - 1)
    response = data(client, shop, token)
    assert (response.status_code, error_code(response)) == (401, "token_expired")


def test_a_token_valid_longer_than_a_day_is_refused(client, shop, customer):
    token = sign(shop.widget_secret, shop.slug, customer.external_id, int(time.time()) + 3 * 24 * 3600)
    response = data(client, shop, token)
    assert (response.status_code, error_code(response)) == (400, "token_lifetime")


def test_a_token_of_another_program_is_refused(client, shop, customer):
    other = ProgramFactory(slug="other-club")
    ledger.program_widget_secret_rotate(program=other)
    MemberFactory(program=other, external_id=customer.external_id)
    # Signed for the other program (its secret): refused here, whatever the secret.
    token = sign(other.widget_secret, other.slug, customer.external_id, int(time.time()) + 600)
    assert error_code(data(client, shop, token)) == "token_invalid"
    # Even with the same secret, the slug is part of what is signed.
    Program.objects.filter(pk=other.pk).update(widget_secret=shop.widget_secret)
    token = sign(shop.widget_secret, other.slug, customer.external_id, int(time.time()) + 600)
    assert error_code(data(client, shop, token)) == "token_invalid"


def test_a_member_of_another_program_is_nobody_here(client, shop):
    other = ProgramFactory()
    MemberFactory(program=other, external_id="only-there")
    token = widget.token_make(program=shop, customer_ref="only-there")
    response = data(client, shop, token)
    assert (response.status_code, error_code(response)) == (404, "member_unknown")


def test_changing_the_customer_reference_breaks_the_signature(client, shop, customer):
    other = MemberFactory(program=shop, external_id="shop-customer-43")
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    _v, _ref, expires, signature = token.split(".")
    ref43 = base64.urlsafe_b64encode(other.external_id.encode()).rstrip(b"=").decode()
    response = data(client, shop, f"v1.{ref43}.{expires}.{signature}")
    assert (response.status_code, error_code(response)) == (401, "token_invalid")


@pytest.mark.parametrize("part", [1, 2, 3])
def test_a_tampered_token_is_refused(client, shop, customer, part):
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    pieces = token.split(".")
    if part == 2:  # the expiry, a little later
        pieces[2] = str(int(pieces[2]) + 7)
    else:
        pieces[part] = pieces[part][:-1] + ("A" if pieces[part][-1] != "A" else "B")
    response = data(client, shop, ".".join(pieces))
    assert response.status_code in (400, 401)
    assert error_code(response) in ("token_invalid", "token_malformed")


@pytest.mark.parametrize("token", ["", "garbage", "v1...", "v2.YQ.1.x", "v1.YQ.abc." + "A" * 43, "x" * 5000])
def test_malformed_tokens_are_clear_400s(client, shop, customer, token):
    response = data(client, shop, token)
    assert response.status_code == 400
    assert error_code(response) in ("token_missing", "token_malformed")


def test_without_a_secret_the_widget_is_off(client, shop, customer):
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    ledger.program_widget_off(program=shop)
    response = data(client, shop, token)
    assert (response.status_code, error_code(response)) == (403, "widget_off")
    assert client.get(f"/p/{shop.slug}/widget/frame", {"token": token}).status_code == 403


def test_a_rotated_secret_refuses_the_old_tokens(client, shop, customer):
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    ledger.program_widget_secret_rotate(program=shop)
    assert error_code(data(client, shop, token)) == "token_invalid"


def test_an_unknown_or_inactive_program_is_a_404(client, shop, customer):
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    assert error_code(client.get("/p/no-such-program/widget/data", {"token": token})) == "program_unknown"
    Program.objects.filter(pk=shop.pk).update(is_active=False)
    assert data(client, shop, token).status_code == 404


def test_an_anonymised_member_is_nobody(client, shop, customer):
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    type(customer).objects.filter(pk=customer.pk).update(anonymised_at="2026-01-01T00:00:00Z")
    assert error_code(data(client, shop, token)) == "member_unknown"


def test_the_frame_page_and_its_strict_policy(client, shop, customer, django_assert_max_num_queries):
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    with django_assert_max_num_queries(MAX_STATEMENTS):
        response = client.get(f"/p/{shop.slug}/widget/frame", {"token": token})
    assert response.status_code == 200
    html = response.content.decode()
    assert "300 beans" in html
    assert "Free espresso" in html
    assert customer.referral_code in html
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'none'" in policy
    assert "frame-ancestors https://shop.example.com https://www.shop.example.com" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "X-Frame-Options" not in response  # frame-ancestors decides
    assert response["Referrer-Policy"] == "no-referrer"
    assert "<script" not in html


def test_the_frame_is_framable_nowhere_without_origins(client, shop, customer):
    Program.objects.filter(pk=shop.pk).update(widget_origins="")
    token = widget.token_make(program=shop, customer_ref=customer.external_id)
    response = client.get(f"/p/{shop.slug}/widget/frame", {"token": token})
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


def test_a_refused_frame_says_so_without_data(client, shop, customer):
    token = sign("forged", shop.slug, customer.external_id, int(time.time()) + 60)
    response = client.get(f"/p/{shop.slug}/widget/frame", {"token": token})
    assert response.status_code == 401
    assert "not available" in response.content.decode()
    assert "300" not in response.content.decode()
    assert "frame-ancestors https://shop.example.com" in response["Content-Security-Policy"]


@pytest.mark.parametrize(("path", "kind"), [("/p/widget.js", "javascript"), ("/p/widget.css", "css")])
def test_the_assets_are_small_and_carry_a_strict_policy(client, path, kind):
    response = client.get(path)
    assert response.status_code == 200
    assert kind in response["Content-Type"]
    assert len(response.content) < 8_000
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert "max-age=3600" in response["Cache-Control"]
    if kind == "javascript":
        text = response.content.decode()
        assert "eval(" not in text
        assert "innerHTML" not in text
        assert "new Function" not in text


def test_widget_origins_are_validated():
    Program(widget_origins="https://shop.example.com\nhttp://localhost:8000\n").full_clean(exclude=["name", "slug"])
    for bad in ("shop.example.com", "http://shop.example.com", "https://shop.example.com/path", "*"):
        with pytest.raises(ValidationError):
            Program(widget_origins=bad).full_clean(exclude=["name", "slug"])


def test_the_admin_rotates_and_turns_off_the_secret(client, staff, shop):
    client.force_login(staff)
    page = client.get(f"/admin/loyalty/program/{shop.pk}/change/").content.decode()
    assert shop.widget_secret[-4:] in page
    assert "Generate a new secret" in page
    old = shop.widget_secret
    url = f"/admin/loyalty/program/{shop.pk}/widget-secret/"
    assert client.get(url).status_code == 403
    response = client.post(url, {"widget": "rotate"})
    assert response.status_code == 302
    shop.refresh_from_db()
    assert shop.widget_secret
    assert shop.widget_secret != old
    client.post(url, {"widget": "off"})
    shop.refresh_from_db()
    assert shop.widget_secret == ""
    assert "Off (no secret)" in client.get(f"/admin/loyalty/program/{shop.pk}/change/").content.decode()


def test_the_widget_token_command_prints_a_working_token_and_the_snippet(client, shop, customer):
    out = io.StringIO()
    call_command("widget_token", shop.slug, customer.external_id, stdout=out)
    text = out.getvalue()
    token = next(line.split()[-1] for line in text.splitlines() if line.startswith("token:"))
    assert data(client, shop, token).status_code == 200
    assert 'data-program="bean-club"' in text
    assert "/p/widget.js" in text


def test_the_my_points_page_stays_within_ten_statements(client, shop, customer, django_assert_max_num_queries):
    log_in(client, customer)
    with django_assert_max_num_queries(MAX_STATEMENTS):
        response = client.get(f"/p/{shop.slug}/")
    assert response.status_code == 200


def test_the_demo_shop_page_exists_only_with_debug(client, settings, shop, customer):
    assert client.get(f"/p/{shop.slug}/widget/demo").status_code == 404
    settings.DEBUG = True
    response = client.get(f"/p/{shop.slug}/widget/demo")
    assert response.status_code == 200
    assert "data-token=" in response.content.decode()


def test_load_demo_turns_the_widget_on_and_says_how_to_try_it(client, settings, shop, customer):
    from portal.demo import demo_widget_setup

    ledger.program_widget_off(program=shop)
    Program.objects.filter(pk=shop.pk).update(widget_origins="")
    shop.refresh_from_db()
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    line = demo_widget_setup(program=shop)
    shop.refresh_from_db()
    assert shop.widget_secret
    assert shop.widget_origins == "http://127.0.0.1:8000"
    assert "/p/bean-club/widget/demo" in line
    assert "widget_token bean-club shop-customer-42" in line
    again = shop.widget_secret
    demo_widget_setup(program=shop)  # idempotent: the secret stays
    shop.refresh_from_db()
    assert shop.widget_secret == again


def test_staff_who_may_only_view_the_program_never_see_the_secret(client, shop):
    from django.contrib.auth.models import Permission

    from tests.loyalty.factories import StaffFactory

    viewer = StaffFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_program"))
    client.force_login(viewer)
    page = client.get(f"/admin/loyalty/program/{shop.pk}/change/")
    assert page.status_code == 200
    assert "On (a secret is set)" in page.content.decode()
    assert shop.widget_secret not in page.content.decode()
    assert client.post(f"/admin/loyalty/program/{shop.pk}/widget-secret/", {"widget": "off"}).status_code == 403
