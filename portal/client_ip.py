"""The client's IP address for the portal's rate limits (django-ratelimit's
`RATELIMIT_IP_META_KEY` points here; docs/portal.md, "Behind a reverse proxy").

Without proxies (`PORTAL_TRUSTED_PROXIES = 0`, the default) it is `REMOTE_ADDR`, and a
forwarding header is ignored: anyone can send one. Behind N reverse proxies that each append
the address they received the request from to the header (`PORTAL_CLIENT_IP_HEADER`, default
X-Forwarded-For), the last N hops of [header entries..., REMOTE_ADDR] are those proxies, and the
hop just before them is the client as the outermost proxy saw it: the rightmost address no proxy
of ours vouches for. Entries further left were written by the client and are never read. The app
server must then be reachable only through the proxies.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _meta_name(header: str) -> str:
    return "HTTP_" + header.strip().upper().replace("-", "_")


def _valid(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ""


def client_ip(request: HttpRequest) -> str:
    """The address the rate limits count against (see the module's docstring)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    trusted = int(getattr(settings, "PORTAL_TRUSTED_PROXIES", 0) or 0)
    if trusted <= 0:
        return remote
    header = getattr(settings, "PORTAL_CLIENT_IP_HEADER", "X-Forwarded-For") or "X-Forwarded-For"
    forwarded = request.META.get(_meta_name(header), "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()] + [remote]
    # Fewer hops than proxies: the request skipped some; the leftmost hop is all there is.
    candidate = hops[-(trusted + 1)] if len(hops) > trusted else hops[0]
    # A malformed entry: count the request against the nearest proxy rather than a made-up key.
    return _valid(candidate) or remote
