"""Joining a program from the portal: the API's enrolment (signup bonus, referral, welcome
email), then a login link to prove the address."""

from __future__ import annotations

import pytest

from loyalty.models import Member
from notifications.models import EmailMessage
from tests.loyalty.factories import MemberFactory
from tests.workflows.factories import EarningRuleFactory, ReferralSettingsFactory
from workflows.models import Referral

pytestmark = pytest.mark.django_db(transaction=True)


def form(**changes):
    data = {
        "email": "New.Friend@Example.com",
        "first_name": "Noor",
        "last_name": "Haddad",
        "birthday": "1990-04-02",
        "language": "fr",
        "email_consent": "on",
        "referral_code": "",
    }
    data.update(changes)
    return data


def test_joining_enrols_with_the_signup_bonus_and_the_referral_and_emails_a_login_link(client, program):
    EarningRuleFactory(program=program, trigger="signup", name="Welcome bonus", points=100)
    ReferralSettingsFactory(program=program)
    referrer = MemberFactory(program=program, referral_code="FRIEND42")
    page = client.get(f"/p/{program.slug}/join?ref=FRIEND42")
    assert 'value="FRIEND42"' in page.content.decode()

    response = client.post(f"/p/{program.slug}/join?ref=FRIEND42", form(referral_code="friend42"))

    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/join/sent"
    member = Member.objects.get(program=program, email="new.friend@example.com")
    assert (member.first_name, member.language, member.email_consent) == ("Noor", "fr", True)
    assert str(member.birthday) == "1990-04-02"
    assert member.referred_by_id == referrer.pk
    assert Referral.objects.filter(friend=member, referrer=referrer).exists()
    assert member.lifetime_earned == 100  # the signup bonus, as through the API
    kinds = set(EmailMessage.objects.filter(member=member).values_list("kind", flat=True))
    assert {"welcome", "login_link"} <= kinds
    # Not logged in before the address is proved.
    assert client.get(f"/p/{program.slug}/").status_code == 302
    # The next pages are in the language chosen.
    assert "Vérifiez vos e-mails" in client.get(response["Location"]).content.decode()


def test_an_address_already_enrolled_is_a_form_error_with_a_login_link(client, program, member):
    response = client.post(f"/p/{program.slug}/join", form(email=member.email.upper(), language="en"))
    assert response.status_code == 200
    text = response.content.decode()
    assert "A member already has this email address." in text
    assert f'href="/p/{program.slug}/login"' in text
    assert Member.objects.filter(program=program).count() == 1


def test_an_unknown_referral_code_is_a_form_error_and_enrols_nobody(client, program):
    response = client.post(f"/p/{program.slug}/join", form(referral_code="NOPE", language="en"))
    assert response.status_code == 200
    assert "No member has this referral code" in response.content.decode()
    assert not Member.objects.filter(program=program).exists()


def test_a_referral_code_of_another_program_is_refused(client, program, other_program_member):
    response = client.post(
        f"/p/{program.slug}/join", form(referral_code=other_program_member.referral_code, language="en")
    )
    assert "No member has this referral code" in response.content.decode()
    assert not Member.objects.filter(program=program).exists()


def test_the_same_address_may_join_two_programs(client, program, other_program):
    assert client.post(f"/p/{program.slug}/join", form()).status_code == 302
    assert client.post(f"/p/{other_program.slug}/join", form()).status_code == 302
    assert Member.objects.filter(email="new.friend@example.com").count() == 2


def test_joining_is_rate_limited_per_client_ip(client, program, settings):
    settings.PORTAL_RATE_PER_IP = "2/h"
    for n in range(2):
        assert client.post(f"/p/{program.slug}/join", form(email=f"p{n}@example.com")).status_code == 302
    assert client.post(f"/p/{program.slug}/join", form(email="p9@example.com")).status_code == 429
    assert not Member.objects.filter(email="p9@example.com").exists()


def test_a_birthday_in_the_future_is_refused(client, program):
    response = client.post(f"/p/{program.slug}/join", form(birthday="2999-01-01", language="en"))
    assert "Enter a date between 1900 and today." in response.content.decode()


def test_the_join_form_needs_the_csrf_token(program):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post(f"/p/{program.slug}/join", form())
    assert response.status_code == 403
    assert not Member.objects.exists()


def test_the_join_page_says_who_invited_the_friend_and_what_they_get(client, program):
    from decimal import Decimal

    EarningRuleFactory(program=program, name="Welcome", trigger="signup", points=Decimal(100))
    ReferralSettingsFactory(program=program, is_active=True, friend_points=250, min_order_amount=Decimal(20))
    referrer = MemberFactory(program=program, first_name="Léa", last_name="Secret")
    text = client.get(f"/p/{program.slug}/join", {"ref": referrer.referral_code}).content.decode()
    assert f"Léa invited you to {program.name}." in text
    assert "Secret" not in text
    assert f"250 {program.points_name} after your first purchase of 20.00 {program.currency} or more" in text
    assert f"100 {program.points_name} when you join" in text
    # A code of nobody, or none: no invitation, the welcome bonus still.
    for params in ({"ref": "NOBODY12"}, {}):
        text = client.get(f"/p/{program.slug}/join", params).content.decode()
        assert "invited you to" not in text
        assert f"100 {program.points_name} when you join" in text
    # A blocked member's code invites nobody.
    referrer.status = Member.Status.BLOCKED
    referrer.save(update_fields=["status"])
    assert (
        "invited you to" not in client.get(f"/p/{program.slug}/join", {"ref": referrer.referral_code}).content.decode()
    )
