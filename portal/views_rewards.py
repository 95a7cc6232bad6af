"""The portal's rewards pages: the catalog, redeeming with a confirmation step, my coupons (code,
QR and barcode for the till) and refer a friend (docs/portal.md). Thin: the redemption is
`rewards.services.reward_redeem`, the same service as `POST /api/v1/redemptions`; whether a
reward may be redeemed is `rewards.selectors.reward_refusal`."""

from __future__ import annotations

import base64
import re
import uuid
from urllib.parse import urlencode

import segno
from barcode import Code128
from barcode.writer import SVGWriter
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods

from loyalty import errors
from loyalty.models import Program
from rewards import services as reward_services
from rewards.errors import RewardUnavailable
from rewards.models import Redemption, Reward
from rewards.selectors import Refusal
from workflows.models import Referral

from . import selectors_rewards as selectors
from .access import Visitor, portal_page
from .paging import page_number
from .views import _page
from .wording import money
from .wording import points_text as _points

TOKEN = re.compile(r"[0-9a-f]{32}")


def _not_found(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """A 404 answered inside the portal page, so that it carries the portal's policy and look
    (an Http404 raised through `portal_page` would get Django's bare page, without the CSP)."""
    return _page(request, visitor, "portal/rewards_not_found.html", {}, status=404)


def refusal_text(refusal: Refusal, reward: Reward) -> str:
    """A refusal of rewards.selectors in the member's words and language."""
    reason = refusal.reason
    if reason == "out_of_stock":
        return _("Out of stock.")
    if reason == "tier" and reward.min_tier is not None:
        return _("For %(tier)s members and above.") % {"tier": reward.min_tier.name}
    if reason == "limit_reached":
        limit = reward.per_member_limit or 0
        return ngettext(
            "You have redeemed it %(count)s time, the most allowed.",
            "You have redeemed it %(count)s times, the most allowed.",
            limit,
        ) % {"count": limit}
    if reason == "not_started" and reward.starts_at:
        return _("Offered from %(date)s.") % {"date": formats.date_format(reward.starts_at, "DATE_FORMAT")}
    if reason == "ended":
        return _("No longer offered.")
    return _("Not offered at the moment.")


def _why_not(program: Program, item: selectors.CatalogItem) -> str:
    if item.refusal is not None:
        return refusal_text(item.refusal, item.reward)
    if item.missing:
        return _("You need %(points)s more.") % {"points": _points(program, item.missing)}
    return ""


def _facts(program: Program, reward: Reward) -> list[str]:
    """Stock, limit, dates and coupon validity, as short sentences."""
    facts = []
    if reward.min_tier is not None:
        facts.append(_("Tier: %(tier)s and above") % {"tier": reward.min_tier.name})
    if reward.stock is not None:
        left = max(reward.stock - reward.issued_count, 0)
        facts.append(ngettext("%(count)s left", "%(count)s left", left) % {"count": left})
    if reward.per_member_limit is not None:
        facts.append(
            ngettext("%(count)s per member", "%(count)s per member", reward.per_member_limit)
            % {"count": reward.per_member_limit}
        )
    if reward.ends_at is not None:
        facts.append(_("Until %(date)s") % {"date": formats.date_format(reward.ends_at, "DATE_FORMAT")})
    if reward.valid_days is not None:
        facts.append(
            ngettext("Coupon valid %(count)s day", "Coupon valid %(count)s days", reward.valid_days)
            % {"count": reward.valid_days}
        )
    return facts


def _row(program: Program, item: selectors.CatalogItem) -> dict[str, object]:
    reward = item.reward
    row: dict[str, object] = {
        "item": item,
        "why_not": _why_not(program, item),
        "facts": _facts(program, reward),
        "confirm_url": reverse("portal:reward_redeem", args=[program.slug, reward.pk]),
    }
    if item.cost is not None:
        row["price"] = _points(program, item.cost)
    else:
        row["price"] = _("%(points)s = %(value)s") % {
            "points": _points(program, item.step),
            "value": money(program, selectors.money_for(reward, item.step)),
        }
        row["choices"] = [(c.points, f"{_points(program, c.points)} = {money(program, c.value)}") for c in item.choices]
    return row


@portal_page(login_required=True)
@require_http_methods(["GET"])
def rewards(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """The catalog the member sees, each reward with its cost and facts, and why not when it is
    not available."""
    assert visitor.member is not None
    items = selectors.catalog_page(member=visitor.member, now=timezone.now())
    rows = [_row(visitor.program, item) for item in items]
    return _page(request, visitor, "portal/rewards.html", {"rows": rows}, current="rewards")


def _chosen_points(item: selectors.CatalogItem, raw: str) -> int | None:
    """The member's choice of points for a points-as-money-off reward, if it is one they can
    choose (a multiple of the step within the bounds); None otherwise."""
    try:
        points = int(raw)
    except (TypeError, ValueError):
        return None
    if item.low <= points <= item.high and points % item.step == 0:
        return points
    return None


def _redeem_error(exc: errors.LoyaltyError, item: selectors.CatalogItem, program: Program) -> str:
    if isinstance(exc, RewardUnavailable):
        return refusal_text(Refusal(exc.details.get("reason", ""), ""), item.reward)
    if isinstance(exc, errors.InsufficientPoints):
        return _("You do not have enough %(points)s for this reward.") % {"points": program.points_name}
    if isinstance(exc, errors.BelowMinimumRedemption):
        return _("A reward costs at least %(points)s.") % {"points": _points(program, program.min_redemption)}
    if isinstance(exc, errors.InvalidInput):
        return _("Choose a number of %(points)s from the list.") % {"points": program.points_name}
    if isinstance(exc, errors.MemberBlocked):
        return _("Your account cannot redeem rewards. Please contact us.")
    return _("The reward could not be redeemed. Please try again.")


@portal_page(login_required=True)
@require_http_methods(["GET", "POST"])
def reward_redeem(request: HttpRequest, visitor: Visitor, reward_id: int) -> HttpResponse:
    """GET: the confirmation page (what it costs, what it gives, the balance after). POST: redeem
    through rewards.services.reward_redeem with an idempotency key from the page's hidden
    token, so a double click or a resent form issues one coupon; then the coupon's page."""
    member, program = visitor.member, visitor.program
    assert member is not None
    catalog_url = reverse("portal:rewards", args=[program.slug])
    item = selectors.catalog_item(member=member, reward_id=reward_id, now=timezone.now())
    if item is None:
        return _not_found(request, visitor)
    data = request.POST if request.method == "POST" else request.GET
    points: int | None = None
    if item.cost is None:
        points = _chosen_points(item, data.get("points", ""))
        if points is None and request.method == "GET" and item.high >= item.low and "points" not in data:
            points = item.low
    why_not = _why_not(program, item)
    if request.method == "POST":
        token = data.get("token", "")
        if not TOKEN.fullmatch(token):
            messages.error(request, _("Please choose the reward again."))
            return redirect(catalog_url)
        if item.cost is None and points is None:
            messages.error(
                request, why_not or _("Choose a number of %(points)s from the list.") % {"points": program.points_name}
            )
            return redirect(catalog_url)
        try:
            result = reward_services.reward_redeem(
                program=program,
                member=member,
                reward=item.reward,
                points=points,
                idempotency_key=f"portal:{member.pk}:{token}",
            )
        except errors.IdempotencyConflict:
            # The same form sent twice at once: the first one is issuing the coupon.
            return redirect("portal:coupons", program.slug)
        except errors.LoyaltyError as exc:
            messages.error(request, _redeem_error(exc, item, program))
            return redirect(catalog_url)
        if not result.replayed:
            messages.success(request, _("Here is your coupon. Show it at the till or use its code online."))
        return redirect("portal:coupon", program.slug, result.redemption.pk)
    if why_not or (item.cost is None and points is None):
        messages.error(
            request, why_not or _("Choose a number of %(points)s from the list.") % {"points": program.points_name}
        )
        return redirect(catalog_url)
    spend = item.cost if item.cost is not None else points
    assert spend is not None
    context = {
        "reward": item.reward,
        "spend": _points(program, spend),
        "points": points,
        "gives": money(program, selectors.money_for(item.reward, spend)) if points is not None else "",
        "after": _points(program, int(member.available) - spend),
        "token": uuid.uuid4().hex,
        "catalog_url": catalog_url,
        "facts": _facts(program, item.reward),
    }
    return _page(request, visitor, "portal/reward_confirm.html", context, current="rewards")


def _status_text(status: str) -> str:
    if status == Redemption.Status.ISSUED:
        return _("Ready to use")
    if status == Redemption.Status.USED:
        return _("Used")
    if status == Redemption.Status.CANCELLED:
        return _("Cancelled")
    return _("Expired")


def _gives(program: Program, coupon: Redemption) -> str:
    """What the coupon gives, in words."""
    kind = coupon.kind
    if kind in (Reward.Kind.AMOUNT_OFF, Reward.Kind.POINTS_FOR_AMOUNT) and coupon.value is not None:
        return _("%(amount)s off") % {"amount": money(program, coupon.value)}
    if kind in (Reward.Kind.PERCENT_OFF, Reward.Kind.PRODUCT_DISCOUNT) and coupon.value is not None:
        return _("%(percent)s%% off") % {"percent": formats.number_format(coupon.value.normalize(), use_l10n=True)}
    if kind == Reward.Kind.FREE_SHIPPING:
        return _("Free shipping")
    if kind == Reward.Kind.FREE_PRODUCT:
        return _("A free product")
    return ""


def _coupon_row(program: Program, coupon: Redemption, now: object) -> dict[str, object]:
    status = selectors.coupon_status(coupon, now)  # type: ignore[arg-type]
    return {
        "coupon": coupon,
        "status": status,
        "status_text": _status_text(status),
        "gives": _gives(program, coupon),
        "url": reverse("portal:coupon", args=[program.slug, coupon.pk]),
    }


@portal_page(login_required=True)
@require_http_methods(["GET"])
def coupons(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """My coupons, newest first, with status and expiry."""
    assert visitor.member is not None
    now = timezone.now()
    page = selectors.coupons_of(member=visitor.member, page=page_number(request))
    rows = [_coupon_row(visitor.program, c, now) for c in page.items]
    context = {"rows": rows, "paged": page, "pager_label": _("Pages of coupons")}
    return _page(request, visitor, "portal/coupons.html", context, current="coupons")


def qr_data_uri(text: str) -> str:
    """The QR code of `text` as an SVG data: URI (the portal's CSP allows data: images)."""
    return segno.make_qr(text, error="m").svg_data_uri(scale=8, border=4, dark="#000", light="#fff")


def barcode_data_uri(text: str) -> str:
    """`text` as a Code128 barcode, an SVG data: URI, without the human-readable line (the page
    prints the code in large type beside it)."""
    options = {"module_width": 0.4, "module_height": 18.0, "quiet_zone": 6.0, "write_text": False}
    svg = Code128(text, writer=SVGWriter()).render(options)
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


@portal_page(login_required=True)
@require_http_methods(["GET"])
def coupon(request: HttpRequest, visitor: Visitor, coupon_id: int) -> HttpResponse:
    """One coupon, large, for the till: the code, its QR and barcode, what it gives, status and
    expiry. Another member's coupon is a 404."""
    assert visitor.member is not None
    found = selectors.coupon_of(member=visitor.member, coupon_id=coupon_id)
    if found is None:
        return _not_found(request, visitor)
    row = _coupon_row(visitor.program, found, timezone.now())
    context = {**row, "usable": row["status"] == Redemption.Status.ISSUED}
    if context["usable"]:
        context.update(qr=qr_data_uri(found.code), barcode=barcode_data_uri(found.code))
    return _page(request, visitor, "portal/coupon.html", context, current="coupons")


REFERRAL_STATUS = {
    Referral.Status.PENDING: "pending",
    Referral.Status.REWARDED: "rewarded",
    Referral.Status.REJECTED: "rejected",
}


def _referral_status(status: str) -> str:
    if status == Referral.Status.REWARDED:
        return _("Rewarded")
    if status == Referral.Status.REJECTED:
        return _("Not eligible")
    return _("Waiting for their first purchase")


@portal_page(login_required=True)
@require_http_methods(["GET"])
def refer(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """Refer a friend: my link and code, share text, the offer, my referrals."""
    member, program = visitor.member, visitor.program
    assert member is not None
    data = selectors.referral_page(member=member, page=page_number(request))
    link = request.build_absolute_uri(
        reverse("portal:join", args=[program.slug]) + "?" + urlencode({"ref": member.referral_code})
    )
    offer = data.settings if data.settings is not None and data.settings.is_active else None
    context: dict[str, object] = {"link": link, "code": member.referral_code, "offer": offer}
    if offer is not None:
        context["friend_gets"] = _points(program, offer.friend_points)
        context["you_get"] = _points(program, offer.referrer_points)
        context["min_order"] = money(program, offer.min_order_amount) if offer.min_order_amount else ""
        context["share_text"] = _(
            "Join %(program)s with my link and get %(points)s after your first purchase: %(link)s"
        ) % {"program": program.name, "points": context["friend_gets"], "link": link}
    else:
        context["share_text"] = _("Join %(program)s with my link: %(link)s") % {"program": program.name, "link": link}
    context["referrals"] = [
        {
            "name": r.friend.first_name or _("A friend"),
            "status": REFERRAL_STATUS.get(r.status, "pending"),
            "status_text": _referral_status(r.status),
            "date": r.created_at,
            "points": r.referrer_points if r.status == Referral.Status.REWARDED else 0,
        }
        for r in data.referrals.items
    ]
    context.update(paged=data.referrals, pager_label=_("Pages of referrals"), pager_anchor="#referrals-title")
    return _page(request, visitor, "portal/refer.html", context, current="refer")
