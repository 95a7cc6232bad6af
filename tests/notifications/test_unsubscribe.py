"""Unsubscribe and preference pages (notifications/views.py): reached from an email without
logging in, RFC 8058 one-click POST without CSRF, GET never unsubscribes, a damaged token is a
400 page, the choice is honoured at send time, in the member's language and program's colours."""

import html

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client
from django.urls import reverse

from notifications import emails
from notifications.models import EmailMessage, EmailOptOut
from tests.loyalty.factories import MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fan(program):
    """A member who agreed to marketing emails."""
    return MemberFactory(program=program, email_consent=True, first_name="Zoé")


def link(name, member, kind):
    return reverse(f"notifications:{name}", args=[emails.unsubscribe_token(member_id=member.pk, kind=kind)])


def queue(program, member, kind, source):
    with transaction.atomic():
        return emails.message_queue(program_id=program.id, member_id=member.id, kind=kind, source=source)


def test_the_email_carries_the_one_click_link_of_its_kind(program, fan):
    queue(program, fan, "birthday", "2026")
    header = mail.outbox[0].extra_headers["List-Unsubscribe"]
    prefix = "<http://127.0.0.1:8000/e/unsubscribe/"
    assert header.startswith(prefix)
    assert header.endswith("/one-click>")
    token = header.removeprefix(prefix).removesuffix("/one-click>")
    assert emails.unsubscribe_read(token) == (fan.pk, "birthday")


def test_one_click_post_unsubscribes_without_login_or_csrf_and_is_honoured(program, fan):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        link("unsubscribe_one_click", fan, "birthday"),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert EmailOptOut.objects.filter(member=fan, kind="birthday", via="one-click").exists()
    # A second click changes nothing and still answers 200.
    assert client.post(link("unsubscribe_one_click", fan, "birthday")).status_code == 200
    assert EmailOptOut.objects.filter(member=fan).count() == 1

    # The next birthday email is suppressed, another kind still goes.
    message = EmailMessage.objects.get(pk=queue(program, fan, "birthday", "2027"))
    assert message.status == "suppressed"
    assert EmailMessage.objects.get(pk=queue(program, fan, "reward_within_reach", "r1")).status == "sent"


def test_get_on_the_page_shows_a_button_and_unsubscribes_nobody(client, fan):
    response = client.get(link("unsubscribe", fan, "birthday"))
    assert response.status_code == 200
    page = response.content.decode()
    assert '<form method="post">' in page
    assert "Birthday wishes" in page
    assert not EmailOptOut.objects.exists()


def test_get_on_the_one_click_url_only_shows_the_confirmation_page(client, fan):
    response = client.get(link("unsubscribe_one_click", fan, "birthday"))
    assert response.status_code == 302
    assert response["Location"] == link("unsubscribe", fan, "birthday")
    assert not EmailOptOut.objects.exists()


def test_the_button_unsubscribes_once_then_the_link_says_so(client, fan):
    url = link("unsubscribe", fan, "birthday")
    response = client.post(url, {"scope": "kind"})
    assert response.status_code == 200
    assert "you will no longer receive “Birthday wishes” emails" in response.content.decode()
    assert list(EmailOptOut.objects.values_list("kind", flat=True)) == ["birthday"]
    again = client.get(url).content.decode()
    assert "already unsubscribed" in again
    assert "<form" not in again


def test_a_marketing_link_can_stop_every_marketing_kind(program, client, fan):
    client.post(link("unsubscribe", fan, "points_reminder"), {"scope": "all"})
    assert list(EmailOptOut.objects.values_list("kind", flat=True)) == [EmailOptOut.ALL_MARKETING]
    assert EmailMessage.objects.get(pk=queue(program, fan, "birthday", "2027")).status == "suppressed"
    assert EmailMessage.objects.get(pk=queue(program, fan, "welcome", "enrolled")).status == "sent"  # transactional


def test_a_transactional_link_cannot_stop_marketing_kinds(client, fan):
    page = client.get(link("unsubscribe", fan, "points_earned")).content.decode()
    assert 'value="all"' not in page
    client.post(link("unsubscribe", fan, "points_earned"), {"scope": "all"})
    assert list(EmailOptOut.objects.values_list("kind", flat=True)) == ["points_earned"]


@pytest.mark.parametrize("mangle", [lambda t: t[:-3] + "xyz", lambda t: "nonsense", lambda t: t.replace(":", ":a", 1)])
def test_a_damaged_token_is_a_clear_400_page(client, fan, mangle):
    token = emails.unsubscribe_token(member_id=fan.pk, kind="birthday")
    for name in ("unsubscribe", "preferences"):
        response = client.get(reverse(f"notifications:{name}", args=[mangle(token)]))
        assert response.status_code == 400
        page = html.unescape(response.content.decode())
        assert "This link is not valid" in page
        assert "Ce lien n'est pas valide" in page
    response = Client(enforce_csrf_checks=True).post(
        reverse("notifications:unsubscribe_one_click", args=[mangle(token)])
    )
    assert response.status_code == 400
    assert not EmailOptOut.objects.exists()


def test_a_token_signed_for_another_purpose_is_refused(client, fan):
    from django.core import signing

    forged = signing.dumps({"m": fan.pk, "k": "birthday"})  # the right data, the wrong salt
    assert client.get(reverse("notifications:unsubscribe", args=[forged])).status_code == 400


def test_a_token_of_a_deleted_member_or_unknown_kind_is_refused(client, fan):
    bad_kind = emails.unsubscribe_token(member_id=fan.pk, kind="no_such_kind")
    gone = emails.unsubscribe_token(member_id=10**9, kind="birthday")
    for token in (bad_kind, gone):
        assert client.get(reverse("notifications:unsubscribe", args=[token])).status_code == 400


def test_the_pages_speak_the_members_language_in_the_programs_colours(client, program, fan):
    program.brand_color = "#7A3E9D"
    program.save()
    fan.language = "fr"
    fan.save()
    page = html.unescape(client.get(link("unsubscribe", fan, "birthday")).content.decode())
    assert '<html lang="fr">' in page
    assert "Ne plus recevoir les e-mails « Vœux d'anniversaire »" in page
    assert "#7A3E9D" in page
    assert program.name in page
    prefs = client.get(link("preferences", fan, "birthday")).content.decode()
    assert "Préférences e-mail" in prefs


def test_a_member_without_a_language_gets_the_programs(client, program, fan):
    program.language = "fr"
    program.save()
    assert '<html lang="fr">' in client.get(link("unsubscribe", fan, "birthday")).content.decode()


def test_a_hostile_name_is_escaped_on_the_pages(client, program, fan):
    program.name = "<b>Evil</b> Shop"
    program.save()
    page = client.get(link("unsubscribe", fan, "birthday")).content.decode()
    assert "<b>Evil</b>" not in page
    assert "&lt;b&gt;Evil&lt;/b&gt;" in page


def test_preferences_switch_kinds_off_and_on_and_are_honoured(program, client, fan):
    url = link("preferences", fan, "welcome")
    page = client.get(url).content.decode()
    assert 'value="points_earned" checked' in page
    assert 'value="login_link"' not in page  # always sent
    # Keep everything but the birthday and points_earned emails.
    kinds = ["welcome", "points_added", "reward_within_reach", "points_reminder"]
    response = client.post(url, {"kinds": kinds})
    assert response.status_code == 200
    assert "Your choices are saved." in response.content.decode()
    off = set(EmailOptOut.objects.filter(member=fan).values_list("kind", flat=True))
    assert {"birthday", "points_earned"} <= off
    assert not off & set(kinds)
    assert EmailMessage.objects.get(pk=queue(program, fan, "birthday", "2027")).status == "suppressed"
    assert EmailMessage.objects.get(pk=queue(program, fan, "reward_within_reach", "r1")).status == "sent"
    # Switched on again.
    client.post(url, {"kinds": [*kinds, "birthday"]})
    assert not EmailOptOut.objects.filter(member=fan, kind="birthday").exists()
    assert 'value="birthday" checked' in client.get(url).content.decode()


def test_preferences_show_an_all_marketing_opt_out_as_off_and_ticking_one_lifts_it(client, fan):
    emails.opt_out(member_id=fan.pk, kind=EmailOptOut.ALL_MARKETING, via="test")
    url = link("preferences", fan, "welcome")
    page = client.get(url).content.decode()
    assert 'value="birthday">' in page  # shown off
    client.post(url, {"kinds": ["welcome", "birthday"]})
    assert not EmailOptOut.objects.filter(member=fan, kind=EmailOptOut.ALL_MARKETING).exists()
    assert not EmailOptOut.objects.filter(member=fan, kind="birthday").exists()


def test_preferences_say_when_offers_are_not_sent_for_lack_of_consent(client, member):
    assert not member.email_consent
    page = client.get(link("preferences", member, "welcome")).content.decode()
    assert "You have not agreed to receive offers" in page
