"""The shop widget (docs/portal.md, "The shop widget"): the panel a shop shows its logged-in
customer, authorised by a token the shop's backend signs (`portal.widget`).

- `/p/<slug>/widget/data?token=...` the panel's data as JSON, readable from any origin (CORS
  `*`, no cookies: the token is the credential);
- `/p/<slug>/widget/frame?token=...` the same panel as a page for an iframe, framable only by
  the program's shop origins (`Program.widget_origins`);
- `/p/widget.js`, `/p/widget.css` the script a shop includes (it draws the panel in a shadow
  root) and the panel's stylesheet;
- `/p/<slug>/widget/demo` (DEBUG only) a pretend shop page showing both, for a demo member.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from csp.constants import NONCE, NONE, SELF
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseNotFound, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from loyalty.models import Member, Program, widget_origin_list
from notifications.email_render import brand_colors

from . import selectors_rewards, widget
from . import selectors_widget as selectors
from .access import LANGUAGE_CODES
from .demo import demo_widget_member
from .views import _metric_needed
from .views_rewards import _points, _why_not, money

# The JSON error of each refusal: (HTTP status, message for the shop's developer).
ERRORS = {
    "program_unknown": (404, "No active program has this slug."),
    "widget_off": (403, "The program's widget is off (no widget secret)."),
    "token_missing": (400, "The token parameter is missing."),
    "token_malformed": (400, "The token is not a widget token (v1.<ref>.<expires>.<signature>)."),
    "token_lifetime": (400, "The token expires more than 24 hours ahead: sign tokens for a shorter time."),
    "token_invalid": (401, "The token's signature does not match (wrong secret, another program, or altered)."),
    "token_expired": (401, "The token has expired: sign a new one."),
    "member_unknown": (404, "No member of this program has this customer id."),
}

# The JSON answer and the assets can be read by anyone holding a token; they never run here.
JSON_POLICY = {"default-src": [NONE], "frame-ancestors": [NONE], "base-uri": [NONE]}


def _frame_policy(program: Program) -> dict[str, list[str]]:
    """The framed panel's policy: nothing runs, styles from here (the brand colours with the
    nonce), and only the program's shop origins may frame it."""
    return {
        "default-src": [NONE],
        "script-src": [NONE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "https:", "data:"],
        "form-action": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": widget_origin_list(program.widget_origins) or [NONE],
    }


def widget_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET only; every answer (a 405, a 404 included) carries a policy: the view's own, else
    JSON_POLICY."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "GET":
            response: HttpResponse = HttpResponseNotAllowed(["GET"])
        else:
            try:
                response = view(request, *args, **kwargs)
            except Http404:
                response = HttpResponseNotFound("Not found.", content_type="text/plain")
        if getattr(response, "_csp_config", None) is None:
            response._csp_config = JSON_POLICY  # type: ignore[attr-defined]
        return response

    return wrapped


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _resolve(program: Program | None, token: str) -> tuple[Program, Member]:
    """The program and the member the token names, or Refused. Queries: 0-1. The member is
    looked up only once the signature is good: nobody learns who is a member without the secret."""
    if program is None:
        raise Refused("program_unknown")
    try:
        claim = widget.token_read(program=program, token=token)
    except widget.TokenError as exc:
        raise Refused(exc.code) from exc
    member = selectors.widget_member(program=program, customer_ref=claim.customer_ref)
    if member is None:
        raise Refused("member_unknown")
    return program, member


def _language(request: HttpRequest, program: Program, member: Member | None) -> str:
    for choice in (request.GET.get("lang", ""), member.language if member else "", program.language):
        if choice in LANGUAGE_CODES:
            return choice
    return "en"


def panel(request: HttpRequest, program: Program, member: Member) -> dict[str, object]:
    """The panel's content in the active language: what the JSON carries and the frame shows."""
    now = timezone.now()
    data = selectors.widget_data(member=member, now=now)
    slug = program.slug
    tier: dict[str, object] | None = None
    progress = data.tier
    if progress.tier is not None or progress.next_tier is not None:
        tier = {"label": _("Tier"), "name": progress.tier.name if progress.tier else _("No tier yet")}
        if progress.next_tier is not None and progress.needed is not None:
            threshold = progress.next_tier.threshold
            percent = 100 if threshold <= 0 else int(min(progress.metric / threshold, 1) * 100)
            tier.update(
                next_name=progress.next_tier.name,
                percent=percent,
                text=_metric_needed(program, progress.needed, progress.next_tier.name),
            )
        else:
            tier.update(next_name="", percent=100, text=_("You have reached the top tier."))
    rewards = []
    for item in data.rewards:
        if item.cost is not None:
            price = _points(program, item.cost)
        else:
            price = _("%(points)s = %(value)s") % {
                "points": _points(program, item.low),
                "value": money(program, selectors_rewards.money_for(item.reward, item.low)),
            }
        rewards.append(
            {
                "name": item.reward.name,
                "price": price,
                "ready": item.available,
                "text": _("Ready to redeem") if item.available else _why_not(program, item),
            }
        )
    referral: dict[str, object] | None = None
    if data.referral is not None:
        offer = data.referral
        link = request.build_absolute_uri(
            reverse("portal:join", args=[slug]) + "?" + urlencode({"ref": member.referral_code})
        )
        referral = {
            "title": _("Refer a friend"),
            "text": _("Your friend gets %(friend)s and you get %(you)s after their first purchase.")
            % {"friend": _points(program, offer.friend_points), "you": _points(program, offer.referrer_points)},
            "code_label": _("Your code"),
            "code": member.referral_code,
            "link_label": _("Your link"),
            "link": link,
        }
    pending = int(member.pending)
    return {
        "program": {
            "name": program.name,
            "slug": slug,
            "points_name": program.points_name,
            "logo_url": program.logo_url,
        },
        "brand": brand_colors(program.brand_color),
        "language": translation.get_language(),
        "title": _("Your %(program)s account") % {"program": program.name},
        "greeting": (_("Hello %(name)s") % {"name": member.first_name}) if member.first_name else "",
        "balance": {
            "label": _("Your balance"),
            "points": int(member.available),
            "text": _points(program, int(member.available)),
            "pending": pending,
            "pending_text": (
                _("+ %(points)s on the way") % {"points": _points(program, pending)} if pending > 0 else ""
            ),
        },
        "tier": tier,
        "rewards": {
            "title": _("Rewards within reach"),
            "items": rewards,
            "empty": _("Keep collecting %(points)s: rewards will show here.") % {"points": program.points_name},
        },
        "referral": referral,
        "portal": {
            "url": request.build_absolute_uri(reverse("portal:home", args=[slug])),
            "text": _("Open my account"),
        },
        "as_of": formats.date_format(timezone.localtime(now), "SHORT_DATETIME_FORMAT"),
    }


def _private(response: HttpResponse) -> HttpResponse:
    add_never_cache_headers(response)
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the address
    return response


@widget_view
def widget_data(request: HttpRequest, slug: str) -> HttpResponse:
    """The panel as JSON. Errors: `{"error": {"code", "message"}}` with 400/401/403/404."""
    try:
        program, member = _resolve(selectors.widget_program(slug=slug), request.GET.get("token", ""))
    except Refused as exc:
        status, message = ERRORS[exc.code]
        response: HttpResponse = JsonResponse({"error": {"code": exc.code, "message": message}}, status=status)
    else:
        language = _language(request, program, member)
        with translation.override(language), timezone.override(program.tz):
            response = JsonResponse(panel(request, program, member))
        response.headers["Content-Language"] = language
    response.headers["Access-Control-Allow-Origin"] = "*"
    response._csp_config = JSON_POLICY  # type: ignore[attr-defined]
    return _private(response)


@widget_view
def widget_frame(request: HttpRequest, slug: str) -> HttpResponse:
    """The panel as a page for an iframe on the shop's pages. A refused token is a short page
    with the same status as the JSON answer (the program's policy still applies)."""
    program = selectors.widget_program(slug=slug)
    if program is None:
        raise Http404("No such program.")
    member = None
    code = ""
    try:
        program, member = _resolve(program, request.GET.get("token", ""))
    except Refused as exc:
        code = exc.code
    language = _language(request, program, member)
    with translation.override(language), timezone.override(program.tz):
        if member is None:
            context: dict[str, object] = {
                "program": {"name": program.name},
                "brand": brand_colors(program.brand_color),
                "language": language,
                "refused": _("This panel is not available at the moment. Please reload the page."),
            }
            response = render(request, "portal/widget_frame.html", context, status=ERRORS[code][0])
        else:
            response = render(request, "portal/widget_frame.html", panel(request, program, member))
    response.headers["Content-Language"] = language
    response.xframe_options_exempt = True  # type: ignore[attr-defined]  # frame-ancestors decides
    response._csp_config = _frame_policy(program)  # type: ignore[attr-defined]
    return _private(response)


ASSETS = {"widget.js": "text/javascript; charset=utf-8", "widget.css": "text/css; charset=utf-8"}


@functools.cache
def _asset(name: str) -> bytes:
    return (Path(__file__).parent / "static" / "portal" / name).read_bytes()


@widget_view
def widget_asset(request: HttpRequest, name: str) -> HttpResponse:
    """The widget's script and stylesheet, for any site to load (CORS `*`: the script fetches
    the stylesheet), cached an hour."""
    if name not in ASSETS:
        raise Http404("No such file.")
    response = HttpResponse(_asset(name), content_type=ASSETS[name])
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response._csp_config = JSON_POLICY  # type: ignore[attr-defined]
    return response


@widget_view
def widget_demo(request: HttpRequest, slug: str) -> HttpResponse:
    """DEBUG only: a pretend shop page with the widget of the program's demo member, both as the
    script and as the iframe, under a strict policy of its own."""
    if not settings.DEBUG:
        raise Http404("Only with DEBUG on.")
    program = selectors.widget_program(slug=slug)
    if program is None:
        raise Http404("No such program.")
    member = demo_widget_member(program=program)
    token = ""
    if program.widget_secret and member is not None and member.external_id:
        token = widget.token_make(program=program, customer_ref=member.external_id)
    context = {"program": program, "member": member, "token": token}
    response = render(request, "portal/widget_demo.html", context)
    response._csp_config = {  # type: ignore[attr-defined]
        "default-src": [NONE],
        "script-src": [SELF],
        "connect-src": [SELF],
        "style-src": [SELF],
        "frame-src": [SELF],
        "img-src": [SELF, "https:", "data:"],
        "base-uri": [NONE],
        "form-action": [NONE],
    }
    return response
