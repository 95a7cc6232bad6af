"""The client IP of the portal's rate limits: REMOTE_ADDR unless proxies are configured, then
the rightmost hop of X-Forwarded-For that no trusted proxy added; a spoofed header is ignored."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import RequestFactory

from portal.client_ip import client_ip

pytestmark = pytest.mark.django_db


def ip_of(remote, forwarded=None, **headers):
    extra = {"REMOTE_ADDR": remote, **headers}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **extra))


def test_without_proxies_the_header_is_ignored(settings):
    settings.PORTAL_TRUSTED_PROXIES = 0
    assert ip_of("198.51.100.4", "203.0.113.9") == "198.51.100.4"
    assert ip_of("198.51.100.4") == "198.51.100.4"


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        # One proxy: it appended the address it saw; anything left of it is the client's own.
        (1, "10.0.0.2", "203.0.113.7", "203.0.113.7"),
        (1, "10.0.0.2", "1.2.3.4, 203.0.113.7", "203.0.113.7"),
        (1, "10.0.0.2", "1.2.3.4,  5.6.7.8 ,203.0.113.7", "203.0.113.7"),
        # Two proxies (a load balancer, then nginx): REMOTE_ADDR is nginx, the last entry the balancer.
        (2, "10.0.0.3", "1.2.3.4, 203.0.113.7, 10.0.0.2", "203.0.113.7"),
        (1, "10.0.0.2", "2001:db8::5", "2001:db8::5"),
        # Fewer hops than proxies: the leftmost is all there is.
        (2, "10.0.0.3", "203.0.113.7", "203.0.113.7"),
        (1, "10.0.0.2", None, "10.0.0.2"),
        # A malformed hop counts against the proxy, not a made-up key.
        (1, "10.0.0.2", "1.2.3.4, not-an-ip", "10.0.0.2"),
    ],
)
def test_behind_proxies_the_rightmost_untrusted_hop_is_the_client(settings, proxies, remote, forwarded, expected):
    settings.PORTAL_TRUSTED_PROXIES = proxies
    assert ip_of(remote, forwarded) == expected


def test_another_header_may_be_named(settings):
    settings.PORTAL_TRUSTED_PROXIES = 1
    settings.PORTAL_CLIENT_IP_HEADER = "X-Real-IP"
    assert ip_of("10.0.0.2", "1.2.3.4", HTTP_X_REAL_IP="203.0.113.7") == "203.0.113.7"


LOGIN = "/p/{slug}/login"


def _post(client, program, n, **extra):
    return client.post(LOGIN.format(slug=program.slug), {"email": f"p{n}@example.com"}, **extra).status_code


@time_machine.travel(dt.datetime(2026, 5, 1, 9, 30, tzinfo=dt.UTC), tick=False)
def test_a_spoofed_header_does_not_escape_the_limit_without_proxies(client, program, settings):
    settings.PORTAL_RATE_PER_IP = "3/h"
    settings.PORTAL_TRUSTED_PROXIES = 0
    codes = [
        _post(client, program, n, REMOTE_ADDR="198.51.100.4", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}") for n in range(4)
    ]
    assert codes == [302, 302, 302, 429]


@time_machine.travel(dt.datetime(2026, 5, 1, 9, 30, tzinfo=dt.UTC), tick=False)
def test_behind_a_proxy_each_client_has_its_own_limit(client, program, settings):
    settings.PORTAL_RATE_PER_IP = "3/h"
    settings.PORTAL_TRUSTED_PROXIES = 1
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    # One client, whatever it writes on the left of the header, is counted once per request.
    codes = [_post(client, program, n, HTTP_X_FORWARDED_FOR=f"9.9.9.{n}, 203.0.113.7", **proxy) for n in range(4)]
    assert codes == [302, 302, 302, 429]
    # Another client behind the same proxy is still served.
    assert _post(client, program, 9, HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy) == 302
