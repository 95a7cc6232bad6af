"""The Content-Security-Policy of the staff pages (docs/back-office.md, README "Production").

The customer portal sets its own, stricter policy per view (portal/access.py). Every other page
under /admin/ (the admin, the dashboard and reports) and the API's documentation pages
(/api/docs/, /api/redoc/) get `STAFF_POLICY` from `StaffPagesCSPMiddleware`, which sits after
django-csp's middleware in MIDDLEWARE (so it sees the response first) and hands the policy to it.

What the policy allows, and why:
- scripts only from this site ('self': the admin's own JS, jQuery and Select2 for the
  autocomplete fields, the calendar widgets, htmx, Swagger UI and Redoc from
  drf-spectacular-sidecar), plus inline scripts that carry the request's nonce
  (`<script nonce="{{ request.csp_nonce }}">`); no eval;
- styles from this site and inline (the admin's templates, Redoc and Swagger UI set style
  attributes and style elements);
- images from this site, data: URIs (Swagger UI's icons) and https (program logos, reward
  images hosted elsewhere);
- Redoc's web worker from a blob: URL; no plugins; forms post only to this site; the pages may
  be framed only by this site (the admin's related-object pop-ups are windows, not frames).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from axes.backends import AxesStandaloneBackend
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.http import HttpRequest, HttpResponseBase

STAFF_POLICY = {
    "default-src": [SELF],
    "script-src": [SELF, NONCE],
    "style-src": [SELF, UNSAFE_INLINE],
    "img-src": [SELF, "data:", "https:"],
    "font-src": [SELF, "data:"],
    "connect-src": [SELF],
    "worker-src": [SELF, "blob:"],
    "frame-src": [SELF],
    "object-src": [NONE],
    "base-uri": [SELF],
    "form-action": [SELF],
    "frame-ancestors": [SELF],
}

STAFF_PATH_PREFIXES = ("/admin/", "/api/docs/", "/api/redoc/")


class StaffPagesCSPMiddleware:
    """Gives the staff pages `STAFF_POLICY` unless the view set a policy of its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if request.path_info.startswith(STAFF_PATH_PREFIXES) and getattr(response, "_csp_config", None) is None:
            response._csp_config = STAFF_POLICY  # read by csp.middleware.CSPMiddleware
        return response


class StaffLoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' lock-out check (first in AUTHENTICATION_BACKENDS), for logins with a
    username: the staff login. The portal's one-time links (django-sesame) authenticate a token
    without a request, which axes refuses outright; they have their own limits (docs/portal.md)."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if request is None or username is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
