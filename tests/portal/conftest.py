"""Fixtures of the portal tests: a client that logs a member in through a real emailed link."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from notifications.models import EmailMessage
from portal import services


def link_of(member) -> str:
    """The path (with its query) of the newest login link queued for `member`."""
    message = EmailMessage.objects.filter(member=member, kind="login_link").order_by("-id").first()
    assert message is not None, "no login link was queued"
    url = urlsplit(message.data["login_url"])
    return f"{url.path}?{url.query}"


def log_in(client, member) -> None:
    """Ask for a link for `member` and use it in `client`."""
    services.login_link_send(program=member.program, email=member.email)
    link = link_of(member)
    client.get(link)  # the page with the button sets the CSRF cookie
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
    response = client.post(link, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302, response.content


@pytest.fixture
def logged_in(client, member):
    log_in(client, member)
    return client
