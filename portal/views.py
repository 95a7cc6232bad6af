"""Pages of the customer portal under /p/<program slug>/ (docs/portal.md). Thin: each parses
its form, calls one service or selector and renders. `access.portal_page` resolves the program,
the logged-in member and the language, and sets the security headers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST
from django_ratelimit.core import is_ratelimited

from loyalty import errors
from loyalty.models import Program
from notifications.email_render import brand_colors
from tiers import selectors as tier_selectors

from . import selectors, selectors_join, services
from .access import SESSION_LANGUAGE, Visitor, portal_page, session_login, session_logout
from .forms import JoinForm, LanguageForm, LoginForm
from .paging import page_number
from .wording import money, points_text


def _nav(visitor: Visitor, current: str) -> list[dict[str, object]]:
    """The portal's menu, in the order a member uses it."""
    slug = visitor.program.slug
    items = [
        ("points", _("My points"), reverse("portal:home", args=[slug])),
        ("rewards", _("Rewards"), reverse("portal:rewards", args=[slug])),
        ("coupons", _("My coupons"), reverse("portal:coupons", args=[slug])),
        ("card", _("My card"), reverse("portal:card", args=[slug])),
        ("refer", _("Refer a friend"), reverse("portal:refer", args=[slug])),
        ("earn", _("How to earn"), reverse("portal:earn", args=[slug])),
        ("preferences", _("Preferences"), reverse("portal:preferences", args=[slug])),
        ("my_data", _("My data"), reverse("portal:my_data", args=[slug])),
    ]
    return [{"key": key, "label": label, "url": url, "current": key == current} for key, label, url in items]


def _page(
    request: HttpRequest,
    visitor: Visitor,
    template: str,
    context: dict[str, object],
    *,
    current: str = "",
    status: int = 200,
) -> HttpResponse:
    program = visitor.program
    base = {
        "program": program,
        "member": visitor.member,
        "brand": brand_colors(program.brand_color),
        "language": visitor.language,
        "language_form": LanguageForm(initial={"language": visitor.language, "next": request.get_full_path()}),
        "nav": _nav(visitor, current) if visitor.member is not None else [],
        # card
        "terms_url": reverse("portal:terms", args=[program.slug]) if program.terms.strip() else "",
    }
    return render(request, template, {**base, **context}, status=status)


def _rate_limited(request: HttpRequest, *, form: str, program_id: int, email: str) -> bool:
    """Count this POST against the client's IP and against the address it names (both shared
    by every web process through the default cache); True when either is over its limit."""
    address = email.strip().lower()
    by_ip = is_ratelimited(
        request, group=f"portal.{form}.ip", key="ip", rate=settings.PORTAL_RATE_PER_IP, increment=True
    )
    by_address = is_ratelimited(
        request,
        group=f"portal.{form}.address",
        key=lambda _group, _request: f"{program_id}:{address}",
        rate=settings.PORTAL_RATE_PER_ADDRESS,
        increment=True,
    )
    return by_ip or by_address


def _too_many(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    return _page(request, visitor, "portal/too_many.html", {}, status=429)


@portal_page()
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    slug = visitor.program.slug
    if visitor.member is not None:
        return redirect("portal:home", slug)
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        if _rate_limited(request, form="login", program_id=visitor.program.pk, email=email):
            return _too_many(request, visitor)
        services.login_link_send(program=visitor.program, email=email)
        return redirect("portal:login_sent", slug)
    return _page(request, visitor, "portal/login.html", {"form": form})


@portal_page()
@require_http_methods(["GET"])
def login_sent(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    return _page(
        request, visitor, "portal/login_sent.html", {"minutes": settings.PORTAL_LOGIN_LINK_MINUTES, "joined": False}
    )


@portal_page()
@require_http_methods(["GET", "POST"])
def login_link(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """GET checks the link and shows one button (mail scanners open links; only the button, a
    POST, uses the one-time link). POST logs the member in to this program."""
    token = request.GET.get("sesame", "")
    program = visitor.program
    if request.method == "POST":
        check = services.login_link_use(program=program, token=token)
        if check.valid and check.member is not None:
            session_login(request, program=program, member=check.member)
            return redirect("portal:home", program.slug)
    else:
        check = services.login_link_read(program=program, token=token)
        if check.valid:
            return _page(request, visitor, "portal/login_link.html", {"link_member": check.member})
    return _page(
        request,
        visitor,
        "portal/login_link_refused.html",
        {"expired": check.state == "expired", "minutes": settings.PORTAL_LOGIN_LINK_MINUTES},
        status=400,
    )


@portal_page()
@require_POST
def logout(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    session_logout(request, program=visitor.program)
    messages.success(request, _("You are logged out."))
    return redirect("portal:login", visitor.program.slug)


@portal_page()
@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    program = visitor.program
    if visitor.member is not None:
        return redirect("portal:home", program.slug)
    initial = {"language": visitor.language, "referral_code": request.GET.get("ref", "")[:16]}
    form = JoinForm(request.POST or None, initial=initial)
    offer = _join_offer(program, (request.POST.get("referral_code") or initial["referral_code"])[:16])
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if _rate_limited(request, form="join", program_id=program.pk, email=data["email"]):
            return _too_many(request, visitor)
        try:
            services.member_join(
                program=program,
                email=data["email"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                birthday=data["birthday"],
                email_consent=data["email_consent"],
                language=data["language"],
                referral_code=data["referral_code"],
            )
        except errors.DuplicateEmail:
            form.add_error("email", _("A member already has this email address."))
            return _page(request, visitor, "portal/join.html", {"form": form, "duplicate": True, **offer})
        except errors.InvalidInput as exc:
            field = exc.details.get("field")
            field = field if field in form.fields else None
            message = (
                _("No member has this referral code. Check it, or leave it empty.")
                if field == "referral_code"
                else _("Check the form.")
            )
            form.add_error(field, message)
            return _page(request, visitor, "portal/join.html", {"form": form, **offer})
        request.session[SESSION_LANGUAGE] = data["language"]
        return redirect("portal:join_sent", program.slug)
    return _page(request, visitor, "portal/join.html", {"form": form, **offer})


def _join_offer(program: Program, referral_code: str) -> dict[str, object]:
    """The join page's welcome bonus and, by a friend's link, the invitation, in words."""
    offer = selectors_join.join_offer(program=program, referral_code=referral_code, now=timezone.now())
    invite = gift = ""
    if offer.referrer_name:
        invite = _("%(name)s invited you to %(program)s.") % {"name": offer.referrer_name, "program": program.name}
    if offer.friend_points:
        invite = invite or _("A friend invited you to %(program)s.") % {"program": program.name}
        words = {"points": points_text(program, offer.friend_points)}
        if offer.min_order:
            words["amount"] = money(program, offer.min_order)
            gift = _("Join, and you get %(points)s after your first purchase of %(amount)s or more.") % words
        else:
            gift = _("Join, and you get %(points)s after your first purchase.") % words
    return {"welcome": offer.welcome, "invite": invite, "gift": gift}


@portal_page()
@require_http_methods(["GET"])
def join_sent(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    return _page(
        request, visitor, "portal/login_sent.html", {"minutes": settings.PORTAL_LOGIN_LINK_MINUTES, "joined": True}
    )


@portal_page()
@require_POST
def language(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """Switch the portal's language for this browser (the member's own language, used by the
    emails, is changed on the preferences page)."""
    form = LanguageForm(request.POST)
    target = reverse("portal:home", args=[visitor.program.slug])
    if form.is_valid():
        request.session[SESSION_LANGUAGE] = form.cleaned_data["language"]
        wanted = form.cleaned_data.get("next") or ""
        if wanted.startswith(f"/p/{visitor.program.slug}/") and url_has_allowed_host_and_scheme(
            wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            target = wanted
    return redirect(target)


def _metric_value(program: Program, value: Decimal) -> str:
    """A value of the program's tier metric with its unit, in the active language."""
    metric = program.tier_metric
    if metric == Program.TierMetric.AMOUNT_SPENT:
        return _("%(amount)s %(currency)s spent") % {
            "amount": formats.number_format(value, 2, force_grouping=True),
            "currency": program.currency,
        }
    count = int(value)
    if metric == Program.TierMetric.ORDER_COUNT:
        return ngettext("%(count)s order", "%(count)s orders", count) % {
            "count": formats.number_format(count, force_grouping=True)
        }
    return _("%(count)s %(points)s earned") % {
        "count": formats.number_format(count, force_grouping=True),
        "points": program.points_name,
    }


def _metric_needed(program: Program, needed: Decimal, tier_name: str) -> str:
    """What the member still has to do to reach `tier_name`."""
    metric = program.tier_metric
    if metric == Program.TierMetric.AMOUNT_SPENT:
        return _("Spend %(amount)s %(currency)s more to reach %(name)s.") % {
            "amount": formats.number_format(needed, 2, force_grouping=True),
            "currency": program.currency,
            "name": tier_name,
        }
    count = int(needed)
    if metric == Program.TierMetric.ORDER_COUNT:
        return ngettext(
            "Place %(count)s more order to reach %(name)s.", "Place %(count)s more orders to reach %(name)s.", count
        ) % {"count": formats.number_format(count, force_grouping=True), "name": tier_name}
    return _("Earn %(count)s more %(points)s to reach %(name)s.") % {
        "count": formats.number_format(count, force_grouping=True),
        "points": program.points_name,
        "name": tier_name,
    }


def _window_text(program: Program) -> str:
    if program.tier_window == Program.TierWindow.ROLLING:
        days = program.tier_window_days or tier_selectors.DEFAULT_ROLLING_DAYS
        return ngettext("over the last %(days)s day", "over the last %(days)s days", days) % {"days": days}
    if program.tier_window == Program.TierWindow.CALENDAR_YEAR:
        return _("this calendar year")
    return _("since you joined")


def _tier_context(
    program: Program, progress: tier_selectors.TierProgress, now: dt.datetime
) -> dict[str, object] | None:
    """The tier block of "My points": the tier, its benefits, what keeps it, the next one and
    how far the member is. None when the program has no tier to show."""
    tier = progress.tier
    if tier is None and progress.next_tier is None:
        return None
    keep: list[str] = []
    if tier is not None:
        if progress.manual_until is not None and progress.manual_until > now:
            keep.append(
                _("Yours until %(date)s.") % {"date": formats.date_format(progress.manual_until, "DATE_FORMAT")}
            )
        elif program.tier_window == Program.TierWindow.LIFETIME:
            keep.append(_("Yours to keep."))
        else:
            keep.append(
                _("To keep it: %(threshold)s %(window)s.")
                % {"threshold": _metric_value(program, tier.threshold), "window": _window_text(program)}
            )
            if progress.retain_until is not None and progress.retain_until > now:
                keep.append(
                    _("It is yours at least until %(date)s.")
                    % {"date": formats.date_format(progress.retain_until, "DATE_FORMAT")}
                )
    context: dict[str, object] = {
        "name": tier.name if tier else "",
        "benefits": tier.benefits if tier else "",
        "keep": keep,
        "next_name": "",
        "so_far": _("So far: %(current)s %(window)s.")
        % {"current": _metric_value(program, progress.metric), "window": _window_text(program)},
    }
    if progress.next_tier is not None and progress.needed is not None:
        context.update(
            next_name=progress.next_tier.name,
            next_threshold_raw=f"{progress.next_tier.threshold:f}",
            current_raw=f"{min(progress.metric, progress.next_tier.threshold):f}",
            progress_text=_metric_needed(program, progress.needed, progress.next_tier.name),
        )
    return context


@portal_page(login_required=True)
@require_http_methods(["GET"])
def home(request: HttpRequest, visitor: Visitor) -> HttpResponse:
    """My points: balances, pending and expiring lots, tier, history."""
    assert visitor.member is not None  # login_required
    now = timezone.now()
    data = selectors.points_page(member=visitor.member, page=page_number(request), now=now)
    context = {"data": data, "tier": _tier_context(visitor.program, data.tier, now)}
    return _page(request, visitor, "portal/points.html", context, current="points")
