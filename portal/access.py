"""Who is looking at a portal page: the program of the URL, the member logged in to that
program in this browser session (if any), and the page's language. Also the policy every
portal page carries (Content-Security-Policy, no caching).

The session holds one member per program, under a key naming the program's slug; a member of
program A logged in here is nobody on program B's pages (the member is looked up with the
URL's program). Staff logins live in the same session under Django's own keys and are left
alone: the portal never calls `django.contrib.auth.login` or `logout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from csp.constants import NONCE, NONE, SELF
from csp.decorators import csp
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.cache import add_never_cache_headers, patch_vary_headers

from loyalty.models import LANGUAGES, Member, Program

LANGUAGE_CODES = frozenset(code for code, _name in LANGUAGES)
SESSION_LANGUAGE = "portal.language"

# No script, style or font from anywhere but this site; the brand colours come in one <style>
# element with the request's nonce; images (the program's logo) from any https host.
POLICY = {
    "default-src": [NONE],
    "script-src": [SELF],
    "style-src": [SELF, NONCE],
    "img-src": [SELF, "https:", "data:"],
    "font-src": [SELF],
    "connect-src": [SELF],
    "form-action": [SELF],
    "base-uri": [NONE],
    "frame-ancestors": [NONE],
}


def session_key(slug: str) -> str:
    return f"portal.member.{slug}"


@dataclass(frozen=True)
class Visitor:
    """The program of the page, the logged-in member of that program (or None), the language."""

    program: Program
    member: Member | None
    language: str


def _language(request: HttpRequest, program: Program, member: Member | None) -> str:
    """The visitor's choice on the portal, else the member's language, else the program's."""
    for choice in (
        request.session.get(SESSION_LANGUAGE, ""),
        member.language if member is not None else "",
        program.language,
    ):
        if choice in LANGUAGE_CODES:
            return choice
    return "en"


def visitor_read(request: HttpRequest, slug: str) -> Visitor:
    """Resolve the URL's program and the session's member of it. Queries: 1 (the member with its
    program) when a member is logged in, else 1 (the program); plus the session's own read."""
    member = None
    member_id = request.session.get(session_key(slug))
    if member_id is not None:
        member = (
            Member.objects.select_related("program")
            .filter(pk=member_id, program__slug=slug, program__is_active=True, anonymised_at__isnull=True)
            .first()
        )
        if member is None:  # the member (or its data) or the program is gone: forget the stale login
            request.session.pop(session_key(slug), None)
    if member is not None:
        program = member.program
    else:
        program = Program.objects.filter(slug=slug, is_active=True).first()
        if program is None:
            raise Http404("No such program.")
    return Visitor(program=program, member=member, language=_language(request, program, member))


def session_login(request: HttpRequest, *, program: Program, member: Member) -> None:
    """Log `member` in to `program`'s portal in this browser. A new session key (no fixation);
    everything else in the session (a staff login, other programs' members) stays."""
    if member.program_id != program.pk:
        raise ValueError("the member belongs to another program")
    request.session.cycle_key()
    request.session[session_key(program.slug)] = member.pk


def session_logout(request: HttpRequest, *, program: Program) -> None:
    request.session.pop(session_key(program.slug), None)


PortalView = Callable[..., HttpResponse]


def portal_page(*, login_required: bool = False) -> Callable[[PortalView], Callable[..., HttpResponse]]:
    """Decorate a portal view `view(request, visitor, **kwargs)`: resolves the visitor, runs the
    view and its rendering in the visitor's language and the program's time zone, and gives
    the answer the portal's Content-Security-Policy, no caching, and its Content-Language.
    With `login_required`, a visitor not logged in to this program goes to the login page."""

    def decorate(view: PortalView) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, slug: str, **kwargs: Any) -> HttpResponse:
            visitor = visitor_read(request, slug)
            with translation.override(visitor.language), timezone.override(visitor.program.tz):
                if login_required and visitor.member is None:
                    response: HttpResponse = redirect(reverse("portal:login", args=[slug]))
                else:
                    response = view(request, visitor, **kwargs)
            add_never_cache_headers(response)
            patch_vary_headers(response, ("Cookie",))
            response.headers.setdefault("Content-Language", visitor.language)
            return response

        return csp(POLICY)(wrapped)

    return decorate
