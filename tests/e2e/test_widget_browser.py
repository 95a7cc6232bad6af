"""The shop widget in a real browser (Playwright driving Debian's Chromium) on a phone (390x844)
and a desktop (1440x900). A pretend shop, served on another origin by a tiny HTTP server under a
strict Content-Security-Policy (no inline script or style, no eval; only the loyalty host in
script-src, connect-src and frame-src), includes the script tag and the iframe: both show the
member's balance, tier, rewards within reach and referral code in the program's colour, the CSP
of neither side blocks anything, and axe-core finds no serious or critical violation. A shop
origin that is not in the program's widget origins cannot frame the panel.

Screenshots go to $PORTAL_SCREENSHOTS (else the test's tmp_path)."""

from __future__ import annotations

import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from django.utils import timezone

from loyalty import services as ledger
from loyalty.models import Program
from portal import widget
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.rewards.factories import RewardFactory
from tiers.services import tier_create, tier_evaluate_member
from workflows.models import EarningRule, ReferralSettings
from workflows.services import activity_report

from .test_portal_browser import CHROMIUM, VIEWPORTS, browser, check_page, shots  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not __import__("shutil").which(CHROMIUM), reason="Debian's chromium is not installed"),
]

SHOP_CSS = """
body { margin: 0; font: 16px/1.5 Georgia, serif; color: #222; background: #faf7f2; }
header { padding: 1rem 1.5rem; background: #2d2a26; color: #fff; }
header p { margin: 0; font-size: 1.25rem; }
main { display: grid; gap: 1.5rem; padding: 1.5rem; grid-template-columns: 1fr; }
@media (min-width: 900px) { main { grid-template-columns: 2fr 1fr 1fr; } }
.product { padding: 1rem; background: #fff; border: 1px solid #e4ddd3; }
iframe { width: 100%; height: 780px; border: 1px solid #e4ddd3; border-radius: 12px; background: #fff; }
h2 { font-size: 1.1rem; }
"""


def shop_page(loyalty: str, slug: str, token: str) -> str:
    frame = f"{loyalty}/p/{slug}/widget/frame?token={quote(token)}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Corner Bakery shop: my account</title><link rel="stylesheet" href="/shop.css"></head>
<body><header><p>Corner Bakery online shop</p></header>
<main>
<section class="product"><h1>My account</h1><p>Your orders and addresses. Sourdough ships on Tuesdays.</p></section>
<section aria-labelledby="script-title"><h2 id="script-title">Loyalty (script)</h2>
<div id="loyalty-widget"></div>
<script src="{loyalty}/p/widget.js" data-program="{slug}" data-token="{token}"
 data-target="loyalty-widget" defer></script>
</section>
<section aria-labelledby="frame-title"><h2 id="frame-title">Loyalty (iframe)</h2>
<iframe src="{frame}" title="Corner Bakery loyalty"></iframe></section>
</main></body></html>"""


@pytest.fixture
def shop_server():
    """A pretend shop on 127.0.0.1 (another origin than the live server's localhost), whose
    pages `pages[path] = (content type, body)` carry a strict policy `policy[0]`."""
    pages: dict[str, tuple[str, str]] = {}
    policy = [""]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            found = pages.get(self.path.split("?")[0])
            if found is None:
                self.send_error(404)
                return
            body = found[1].encode()
            self.send_response(200)
            self.send_header("Content-Type", found[0])
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", policy[0])
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.pages, server.policy = pages, policy  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_shop_page_shows_the_widget_under_a_strict_policy(browser, live_server, shots, shop_server, viewport):  # noqa: F811
    shop = f"http://127.0.0.1:{shop_server.server_address[1]}"
    loyalty = live_server.url
    program = ProgramFactory(
        name="Corner Bakery", points_name="crumbs", brand_color="#B5179E", currency="EUR", widget_origins=shop
    )
    ledger.program_widget_secret_rotate(program=program)
    tier_create(program=program, name="Regular", position=1, threshold=Decimal(0), benefits="A free coffee a month")
    tier_create(program=program, name="Friend of the house", position=2, threshold=Decimal(2000))
    RewardFactory(program=program, name="Free croissant", cost_points=300, position=1)
    RewardFactory(program=program, name="Baguette for a year", cost_points=1400, position=2)
    RewardFactory(program=program, name="Baking class", cost_points=9000, position=3)
    ReferralSettings.objects.create(program=program, is_active=True, referrer_points=500, friend_points=250)
    member = MemberFactory(program=program, external_id="shop-7781", first_name="Léa")
    EarningRule.objects.create(program=program, name="Base points", trigger="purchase", kind="per_amount")
    activity_report(
        program=program,
        member=member,
        type="purchase",
        occurred_at=timezone.now(),
        order_id="ORD-1",
        amount=Decimal(1200),
        currency="EUR",
    )
    member.refresh_from_db()
    tier_evaluate_member(member=member)
    token = widget.token_make(program=program, customer_ref="shop-7781")

    shop_server.pages["/"] = ("text/html; charset=utf-8", shop_page(loyalty, program.slug, token))
    shop_server.pages["/shop.css"] = ("text/css", SHOP_CSS)
    shop_server.policy[0] = (
        f"default-src 'none'; script-src {loyalty}; connect-src {loyalty}; frame-src {loyalty}; "
        "style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"
    )

    context = browser.new_context(viewport=VIEWPORTS[viewport], locale="en-GB", timezone_id="Europe/Paris")
    page = context.new_page()
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if "Content Security Policy" in m.text or "loyalty widget" in m.text or "frame" in m.text.lower()
            else None
        ),
    )
    page.goto(f"{shop}/")

    # The script variant: drawn in a shadow root of the shop's element (Playwright's locators
    # pierce open shadow roots).
    panel = page.locator("#loyalty-widget")
    panel.get_by_text("1,200 crumbs").wait_for(state="visible")
    assert panel.get_by_text("Hello Léa").is_visible()
    assert panel.get_by_text("Regular", exact=True).is_visible()
    assert panel.get_by_text("Earn 800 more crumbs to reach Friend of the house.").is_visible()
    assert panel.get_by_text("Free croissant").is_visible()
    assert panel.get_by_text("Baking class").count() == 0  # out of reach
    assert panel.get_by_text(member.referral_code, exact=True).is_visible()
    portal_link = panel.get_by_role("link", name="Open my account")
    assert portal_link.get_attribute("href") == f"{loyalty}/p/{program.slug}/"
    # Styled by the constructed stylesheet, in the program's colour, despite the shop's policy.
    head_colour = page.evaluate(
        "getComputedStyle(document.querySelector('#loyalty-widget').shadowRoot.querySelector('.lw-head'))"
        ".backgroundColor"
    )
    assert head_colour == "rgb(181, 23, 158)"

    # The iframe variant: the same panel, framed by an allowed origin.
    frame = page.frame_locator("iframe")
    frame.get_by_text("1,200 crumbs").wait_for(state="visible")
    assert frame.get_by_text(member.referral_code, exact=True).is_visible()
    page.locator("iframe").scroll_into_view_if_needed()
    check_page(page, f"{viewport}-widget-1-shop", shots, problems)

    # A shop origin that is not the program's: the frame is refused by frame-ancestors.
    Program.objects.filter(pk=program.pk).update(widget_origins="https://elsewhere.example.com")
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
    page.reload()
    panel.get_by_text("1,200 crumbs").wait_for(state="visible")  # the script variant still works
    page.wait_for_timeout(500)  # no better event for a refused frame
    assert page.frame_locator("iframe").get_by_text("1,200 crumbs").count() == 0
    assert refused, "the frame was not refused"
    context.close()


def test_staff_turn_the_widget_on_rotate_its_secret_and_turn_it_off(browser, live_server, shots):  # noqa: F811
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("manager", "manager@example.com", "manager-pass-1")
    program = ProgramFactory(name="Corner Bakery")
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    page.set_default_timeout(60_000)  # a busy machine: generous, never a speed assertion
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", "manager-pass-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    change = f"{live_server.url}/admin/loyalty/program/{program.pk}/change/"
    page.goto(change)
    page.get_by_role("button", name="Turn the widget on (generate a secret)").click()
    page.get_by_text("has a new widget secret").wait_for(state="visible")
    program.refresh_from_db()
    first = program.widget_secret
    assert first
    assert page.get_by_text("\u2022" * 8 + first[-4:]).is_visible()
    assert not page.get_by_text(first, exact=True).is_visible()  # masked until "Show"
    page.get_by_text("Show the secret", exact=True).click()
    page.get_by_text(first, exact=True).wait_for(state="visible")
    page.locator("fieldset", has_text="Shop widget").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "admin-widget-secret.png"))
    page.get_by_role("button", name="Generate a new secret").click()
    page.get_by_text("has a new widget secret").wait_for(state="visible")
    program.refresh_from_db()
    assert program.widget_secret not in ("", first)
    page.get_by_role("button", name="Turn the widget off").click()
    page.get_by_text("every token is refused").wait_for(state="visible")
    program.refresh_from_db()
    assert program.widget_secret == ""
    page.close()
