"""The portal's card pages (issue 12 §1 and the wallet part of §3, docs/portal.md "Card, how to
earn, terms"): claim a card with its PIN, My card (number, QR code, barcode, wallet buttons),
the wallet downloads, the generated logo Google Wallet shows, How to earn and the program
terms. Thin: each view calls one service or selector and renders."""

from __future__ import annotations

import logging

from csp.decorators import csp
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_http_methods
from django_ratelimit.core import is_ratelimited

from cards import errors as card_errors
from cards import services as card_services
from loyalty import errors as loyalty_errors
from loyalty.models import Member, Program

from . import selectors_card, wallet
from .access import POLICY, Visitor, portal_page
from .forms_card import ClaimForm
from .views import _page, _too_many
from .wording import points_text

logger = logging.getLogger(__name__)

# Claims per logged-in member (besides the per-IP limit of the login form and the card's own
# PIN lock-out of cards.services): enough for typos, not for guessing numbers.
CLAIM_RATE_PER_MEMBER = "10/h"


def _claim_rate_limited(request: HttpRequest, *, member_id: int) -> bool:
    by_ip = is_ratelimited(request, group="portal.claim.ip", key="ip", rate=settings.PORTAL_RATE_PER_IP, increment=True)
    by_member = is_ratelimited(
        request,
        group="portal.claim.member",
        key=lambda _group, _request: str(member_id),
        rate=CLAIM_RATE_PER_MEMBER,
        increment=True,
    )
    return by_ip or by_member


def _claim_error(form: ClaimForm, exc: Exception) -> None:
    """Put the service's refusal on the field it is about, in the customer's words."""
    if isinstance(exc, card_errors.InvalidCardNumber):
        form.add_error("number", _("This is not a valid card number: check the digits."))
    elif isinstance(exc, card_errors.CardNotFound):
        form.add_error("number", _("We know no card with this number. Check the digits."))
    elif isinstance(exc, card_errors.WrongPin):
        left = exc.details.get("attempts_left", 0)
        if exc.details.get("locked") or left <= 0:
            minutes = max(1, exc.details.get("retry_after", card_services.PIN_LOCKOUT_SECONDS) // 60)
            form.add_error(
                "pin",
                _("Too many wrong PINs for this card: it is locked for %(minutes)s minutes.") % {"minutes": minutes},
            )
        else:
            form.add_error(
                "pin",
                ngettext(
                    "This PIN is not the card's. %(left)s try left.",
                    "This PIN is not the card's. %(left)s tries left.",
                    left,
                )
                % {"left": left},
            )
    elif isinstance(exc, card_errors.AlreadyClaimed):
        form.add_error("number", _("This card has already been claimed. If it is yours, please contact us."))
    elif isinstance(exc, card_errors.CardBlocked):
        form.add_error("number", _("This card is blocked and can no longer be used. Please contact us."))
    elif isinstance(exc, loyalty_errors.MemberBlocked):
        form.add_error(None, _("Your account cannot take this card's points. Please contact us."))
    else:
        form.add_error(None, _("This card cannot be claimed. Please contact us."))


@portal_page(login_required=True)
@require_http_methods(["GET", "POST"])
def claim(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """Claim a card with the number and PIN printed on it: it becomes the member's, and the
    points it collected before (an anonymous card) move to the member."""
    assert visitor.member is not None  # login_required
    form = ClaimForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if _claim_rate_limited(request, member_id=visitor.member.pk):
            return _too_many(request, visitor)
        before = int(visitor.member.available)
        try:
            card_services.card_claim(
                program=visitor.program,
                number=form.cleaned_data["number"],
                pin=form.cleaned_data["pin"],
                into_member=visitor.member,
            )
        except loyalty_errors.LoyaltyError as exc:
            _claim_error(form, exc)
        else:
            digits = "".join(ch for ch in form.cleaned_data["number"] if ch.isdigit())[-4:]
            gained = int(Member.objects.values_list("available", flat=True).get(pk=visitor.member.pk)) - before
            text = _("The card ending in %(digits)s is yours now.") % {"digits": digits}
            if gained > 0:
                text += " " + _("Your balance went up by %(points)s.") % {
                    "points": points_text(visitor.program, gained)
                }
            messages.success(request, text)
            return redirect("portal:card", visitor.program.slug)
    return _page(request, visitor, "portal/card_claim.html", {"form": form}, current="card")


@portal_page(login_required=True)
@require_GET
def card(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """My card: each active card's number, QR code and barcode, and the wallet buttons the
    installation is configured for."""
    assert visitor.member is not None
    context = {
        "cards": selectors_card.member_active_cards(member=visitor.member),
        "apple_wallet": wallet.apple_wallet_enabled(),
        "google_wallet": wallet.google_wallet_enabled(),
    }
    return _page(request, visitor, "portal/card.html", context, current="card")


def _no_card(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """The answer for a card that is not one of the member's active cards, or that has no
    pass: a portal page (with the portal's policy) with status 404, saying nothing more."""
    return _page(request, visitor, "portal/card_not_found.html", {}, current="card", status=404)


@portal_page(login_required=True)
@require_GET
def card_pkpass(request: HttpRequest, visitor: Visitor, card_id: int) -> HttpResponse:
    """The Apple Wallet pass of one of the member's active cards (404 for any other card, or
    when Apple Wallet is not configured)."""
    assert visitor.member is not None
    own = selectors_card.member_card(member=visitor.member, card_id=card_id)
    if own is None:
        return _no_card(request, visitor)
    try:
        data = wallet.pkpass_for_card(own)
    except wallet.WalletError as exc:
        logger.info("no pkpass for card %s: %s", own.pk, exc.code)
        return _no_card(request, visitor)
    response = HttpResponse(data, content_type=wallet.PKPASS_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{visitor.program.slug}-card.pkpass"'
    return response


@portal_page(login_required=True)
@require_GET
def card_google(request: HttpRequest, visitor: Visitor, card_id: int) -> HttpResponse:
    """Send the member to Google Wallet's save page for one of their active cards (the link is
    signed when asked for, so it carries today's balance)."""
    assert visitor.member is not None
    own = selectors_card.member_card(member=visitor.member, card_id=card_id)
    if own is None:
        return _no_card(request, visitor)
    try:
        url = wallet.google_save_url_for_card(own, origins=[f"{request.scheme}://{request.get_host()}"])
    except wallet.WalletError as exc:
        logger.info("no Google Wallet link for card %s: %s", own.pk, exc.code)
        return _no_card(request, visitor)
    return redirect(url)


@csp(POLICY)
@require_GET
@cache_control(public=True, max_age=24 * 3600)
def wallet_logo(request: HttpRequest, slug: str) -> HttpResponse:
    """The program's generated logo (PNG) that Google Wallet shows when the program has no
    logo address (docs/wallet.md). Public: Google's servers fetch it."""
    program = get_object_or_404(Program, slug=slug, is_active=True)
    return HttpResponse(wallet.program_logo_png(program), content_type="image/png")


@portal_page()
@require_GET
def earn(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """How to earn: the rules a member earns with today, as members read them."""
    rules = selectors_card.earning_rules(program=visitor.program, now=timezone.now())
    return _page(request, visitor, "portal/earn.html", {"rules": rules}, current="earn")


@portal_page()
@require_GET
def terms(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """The program's terms (`Program.terms`); a program without them says so."""
    return _page(request, visitor, "portal/terms.html", {}, status=200 if visitor.program.terms.strip() else 404)
