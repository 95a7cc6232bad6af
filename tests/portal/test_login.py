"""Logging in to the portal by an emailed one-time link (docs/portal.md): no account
enumeration, one program per login, one-time and expiring links, rate limits, staff sessions
left alone."""

from __future__ import annotations

import datetime as dt
import zlib

import pytest
import time_machine
from django.test import Client
from sesame.utils import get_token

from notifications.models import EmailMessage
from portal import services
from tests.loyalty.factories import MemberFactory

from .conftest import link_of, log_in

pytestmark = pytest.mark.django_db


def login_links():
    return EmailMessage.objects.filter(kind="login_link")


def test_the_login_page_has_a_csrf_protected_form_and_the_portal_security_headers(client, program):
    response = client.get(f"/p/{program.slug}/login")
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert response["X-Frame-Options"] == "DENY"
    assert "no-store" in response["Cache-Control"]


def test_a_members_address_gets_a_login_link_through_the_outbox(client, program, member):
    response = client.post(f"/p/{program.slug}/login", {"email": member.email.upper()})
    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/login/sent"
    message = login_links().get()
    assert message.member_id == member.pk
    assert message.data["valid_minutes"] == 15
    assert f"/p/{program.slug}/login/link?sesame=" in message.data["login_url"]


def test_an_unknown_address_gets_the_same_answer_and_no_email(client, program, member, other_program_member):
    known = client.post(f"/p/{program.slug}/login", {"email": member.email})
    unknown = client.post(f"/p/{program.slug}/login", {"email": "nobody@example.com"})
    elsewhere = client.post(f"/p/{program.slug}/login", {"email": other_program_member.email})
    assert known["Location"] == unknown["Location"] == elsewhere["Location"]
    assert list(login_links().values_list("member_id", flat=True)) == [member.pk]
    page = client.get(known["Location"])
    assert "If you are a member, we sent you an email" in page.content.decode()


def test_opening_the_link_shows_a_button_and_only_the_button_logs_in(client, program, member):
    services.login_link_send(program=program, email=member.email)
    link = link_of(member)
    page = client.get(link)
    assert page.status_code == 200
    assert member.email in page.content.decode()
    # A mail scanner's GET did not log anyone in, nor use the link.
    assert client.get(f"/p/{program.slug}/")["Location"] == f"/p/{program.slug}/login"
    assert client.get(link).status_code == 200
    response = client.post(link)
    assert response["Location"] == f"/p/{program.slug}/"
    home = client.get(f"/p/{program.slug}/")
    assert home.status_code == 200
    assert "Available now" in home.content.decode()


def test_a_used_link_is_refused_with_a_clear_page(client, program, member):
    services.login_link_send(program=program, email=member.email)
    link = link_of(member)
    assert client.post(link).status_code == 302
    other = Client()
    for response in (other.get(link), other.post(link)):
        assert response.status_code == 400
        assert "This link no longer works" in response.content.decode()
    assert other.get(f"/p/{program.slug}/").status_code == 302


def test_a_newer_login_replaces_an_older_link(client, program, member):
    with time_machine.travel(dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)):
        services.login_link_send(program=program, email=member.email)
        first = link_of(member)
    with time_machine.travel(dt.datetime(2026, 5, 1, 9, 1, tzinfo=dt.UTC)):
        services.login_link_send(program=program, email=member.email)
        second = link_of(member)
        assert first != second
        assert client.post(second).status_code == 302
        assert Client().post(first).status_code == 400


def test_an_expired_link_is_refused_with_a_clear_page(client, program, member):
    with time_machine.travel(dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)):
        services.login_link_send(program=program, email=member.email)
        link = link_of(member)
    with time_machine.travel(dt.datetime(2026, 5, 1, 9, 16, tzinfo=dt.UTC)):
        response = client.post(link)
        assert response.status_code == 400
        assert "This link has expired" in response.content.decode()
        assert client.get(f"/p/{program.slug}/").status_code == 302
    with time_machine.travel(dt.datetime(2026, 5, 1, 9, 14, tzinfo=dt.UTC)):
        assert client.post(link).status_code == 302


def test_a_link_of_one_program_opens_nothing_on_another(client, program, other_program, member):
    services.login_link_send(program=program, email=member.email)
    link = link_of(member)
    elsewhere = link.replace(f"/p/{program.slug}/", f"/p/{other_program.slug}/")
    assert client.post(elsewhere).status_code == 400
    assert client.post(link).status_code == 302
    # Logged in to the member's program only.
    assert client.get(f"/p/{program.slug}/").status_code == 200
    assert client.get(f"/p/{other_program.slug}/")["Location"] == f"/p/{other_program.slug}/login"


def test_a_session_member_of_another_program_is_nobody_there(client, program, other_program, member):
    log_in(client, member)
    session = client.session
    session[f"portal.member.{other_program.slug}"] = member.pk  # forged: a member of `program`
    session.save()
    assert client.get(f"/p/{other_program.slug}/").status_code == 302


def test_a_token_of_a_staff_user_logs_nobody_in(client, program, staff):
    token = get_token(staff, scope=services.link_scope(program.pk))
    response = client.post(f"/p/{program.slug}/login/link?sesame={token}")
    assert response.status_code == 400


def test_a_damaged_link_is_refused(client, program, member):
    services.login_link_send(program=program, email=member.email)
    assert client.get(link_of(member)[:-3]).status_code == 400
    assert client.get(f"/p/{program.slug}/login/link").status_code == 400


def test_the_member_gets_one_login_user_for_every_link(program, member):
    services.login_link_send(program=program, email=member.email)
    services.login_link_send(program=program, email=member.email)
    member.refresh_from_db()
    assert member.user is not None
    assert not member.user.is_staff
    assert not member.user.has_usable_password()


def test_a_staff_login_survives_the_portal_login_and_logout(client, program, member, staff):
    client.force_login(staff)
    log_in(client, member)
    assert client.get("/admin/", follow=True).status_code == 200  # the dashboard
    assert client.get(f"/p/{program.slug}/").status_code == 200
    response = client.post(f"/p/{program.slug}/logout")
    assert response["Location"] == f"/p/{program.slug}/login"
    assert client.get(f"/p/{program.slug}/").status_code == 302
    assert client.get("/admin/", follow=True).status_code == 200


def test_logging_out_needs_the_csrf_token(program, member):
    client = Client(enforce_csrf_checks=True)
    log_in(client, member)
    assert client.post(f"/p/{program.slug}/logout").status_code == 403
    assert client.get(f"/p/{program.slug}/").status_code == 200


def test_login_requests_are_limited_per_address(client, program, member):
    # django-ratelimit's hourly windows start at an offset of crc32(key) seconds past the hour:
    # start just after this key's window starts, so the six minutes below stay in one window
    # whatever the program's and the member's ids.
    offset = zlib.crc32(f"{program.pk}:{member.email.lower()}".encode()) % 3600
    start = dt.datetime(2026, 5, 1, 9, tzinfo=dt.UTC) + dt.timedelta(seconds=offset + 1)
    for minute in range(5):
        with time_machine.travel(start + dt.timedelta(minutes=minute)):
            assert client.post(f"/p/{program.slug}/login", {"email": member.email}).status_code == 302
    with time_machine.travel(start + dt.timedelta(minutes=6)):
        response = client.post(f"/p/{program.slug}/login", {"email": member.email}, REMOTE_ADDR="10.0.0.9")
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert login_links().count() == 5  # one per request (a retry within one second is one email)
    # Another address from the same client is still served.
    assert client.post(f"/p/{program.slug}/login", {"email": "x@example.com"}).status_code == 302


def test_login_requests_are_limited_per_client_ip(client, program, settings):
    settings.PORTAL_RATE_PER_IP = "3/h"
    for n in range(3):
        response = client.post(f"/p/{program.slug}/login", {"email": f"a{n}@example.com"}, REMOTE_ADDR="10.0.0.1")
        assert response.status_code == 302
    assert (
        client.post(f"/p/{program.slug}/login", {"email": "b@example.com"}, REMOTE_ADDR="10.0.0.1").status_code == 429
    )
    assert (
        client.post(f"/p/{program.slug}/login", {"email": "b@example.com"}, REMOTE_ADDR="10.0.0.2").status_code == 302
    )


def test_an_unknown_program_is_a_404(client):
    assert client.get("/p/no-such-program/login").status_code == 404


def test_a_blocked_program_member_of_another_program_with_the_same_email_gets_no_link(client, program, other_program):
    MemberFactory(program=other_program, email="same@example.com")
    client.post(f"/p/{program.slug}/login", {"email": "same@example.com"})
    assert not login_links().exists()
