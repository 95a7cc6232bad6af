"""Two browsers press the button of one emailed login link at the same instant (a double
click, or the link opened on two devices): real PostgreSQL, one connection per thread. Exactly
one is logged in; the other gets the "no longer works" page."""

from __future__ import annotations

import threading

import pytest
from django.test import Client

from portal import services
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.loyalty.test_concurrency import JOIN_TIMEOUT, run_together

from .conftest import link_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_two_concurrent_posts_of_one_link_log_in_once(monkeypatch):
    program = ProgramFactory()
    member = MemberFactory(program=program)
    services.login_link_send(program=program, email=member.email)
    link = link_of(member)

    # Both requests first check the link and find it valid, then race to use it: the check of
    # each waits here for the other's, so the race is the worst case every time, not by luck.
    both_checked = threading.Barrier(2)
    read = services.login_link_read

    def read_then_wait(**kwargs):
        check = read(**kwargs)
        both_checked.wait(timeout=JOIN_TIMEOUT)
        return check

    monkeypatch.setattr(services, "login_link_read", read_then_wait)
    clients = [Client(), Client()]

    def press(i: int):
        response = clients[i].post(link)
        return response.status_code, response.content.decode(), response.get("Location", "")

    results = run_together(2, press)
    assert all(kind == "ok" for kind, _ in results), results
    answers = sorted(value for _, value in results)
    (won_status, _won_page, won_location), (lost_status, lost_page, _) = answers  # 302 sorts first
    assert won_status == 302
    assert won_location == f"/p/{program.slug}/"
    assert lost_status == 400
    assert "This link no longer works" in lost_page
    # The winner's browser is logged in, the other's is not.
    logged_in = [c for c in clients if c.get(f"/p/{program.slug}/").status_code == 200]
    assert len(logged_in) == 1
