"""The portal's "Preferences" and "My data" pages: email kinds, consent and language through
the services; the JSON and CSV downloads hold the member's own data only; a deletion request,
confirmed by staff, anonymises the member and leaves the ledger verifiable."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cards.models import Card
from loyalty import errors
from loyalty import services as ledger
from loyalty.models import DeletionRequest, LedgerEntry, Member
from notifications import emails
from notifications.models import EmailMessage, EmailOptOut
from portal import selectors_prefs, services
from rewards import services as reward_services
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory, StaffFactory
from tests.rewards.factories import RewardFactory
from workflows import services as workflow_services
from workflows.models import EarningRule

from .conftest import link_of, log_in

pytestmark = pytest.mark.django_db

MAX_STATEMENTS = 10
PAGES = ("preferences", "my-data", "my-data/export.json", "my-data/export.zip")
POSTS = ("preferences", "preferences/unsubscribe", "my-data/delete")


def purchase(program, member, order_id, amount="100"):
    workflow_services.activity_report(
        program=program,
        member=member,
        type="purchase",
        occurred_at=timezone.now(),
        order_id=order_id,
        amount=Decimal(amount),
        currency="EUR",
    )


@pytest.fixture
def rich_member(program):
    """Purchases, a coupon, a staff adjustment, a card, a referral, an opt-out, emails."""
    EarningRule.objects.create(program=program, name="Base points", trigger="purchase", kind="per_amount")
    member = MemberFactory(program=program, first_name="Léa", email="lea@example.com", birthday="1990-04-02")
    purchase(program, member, "ORD-1", "150")
    purchase(program, member, "ORD-2", "80")
    reward = RewardFactory(program=program, name="Free espresso", cost_points=50)
    reward_services.reward_redeem(program=program, member=member, reward=reward)
    ledger.points_adjust(program=program, member_id=member.pk, points=5, reason="Internal: angry VIP", source="t")
    CardFactory(member=member)
    MemberFactory(program=program, referred_by=member, first_name="Friendly")
    emails.opt_out(member_id=member.pk, kind="birthday", via="test")
    member.refresh_from_db()
    return member


# -- security --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_pages_need_a_login(client, program, page):
    response = client.get(f"/p/{program.slug}/{page}")
    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/login"


@pytest.mark.parametrize("page", POSTS)
def test_posts_need_a_login_and_change_nothing(client, program, member, page):
    response = client.post(f"/p/{program.slug}/{page}", {"kinds": [], "language": "fr"})
    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/login"
    member.refresh_from_db()
    assert member.language == ""
    assert not EmailOptOut.objects.exists()
    assert not DeletionRequest.objects.exists()


@pytest.mark.parametrize("page", PAGES)
def test_a_member_of_another_program_is_nobody_here(client, program, other_program_member, page):
    log_in(client, other_program_member)
    response = client.get(f"/p/{program.slug}/{page}")
    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/login"


def test_the_export_holds_only_my_data(client, program, other_program, rich_member):
    other = MemberFactory(program=program, first_name="Zed", email="zed@example.com")
    purchase(program, other, "SECRET-ORDER", "999")
    stranger = MemberFactory(program=other_program, first_name="Xavier", email="x@example.com")
    emails.opt_out(member_id=other.pk, kind="points_reminder", via="test")
    log_in(client, rich_member)
    # No parameter names another member: the download is always the session's member's.
    for url in (f"/p/{program.slug}/my-data/export.json", f"/p/{program.slug}/my-data/export.json?member={other.pk}"):
        text = client.get(url).content.decode()
        for secret in ("SECRET-ORDER", "Zed", "zed@example.com", "Xavier", "x@example.com", "points_reminder"):
            assert secret not in text
        assert json.loads(text)["profile"][0]["member_id"] == rich_member.pk
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/p/{program.slug}/my-data/export.zip").content))
    everything = "".join(archive.read(name).decode("utf-8-sig") for name in archive.namelist())
    assert "SECRET-ORDER" not in everything
    assert "Zed" not in everything
    # (Not the stranger's id as a bare number: it may occur in a timestamp.)
    assert "Xavier" not in everything
    assert "x@example.com" not in everything
    assert f"member_id\r\n{stranger.pk}\r\n" not in everything
    assert "Friendly" not in everything  # a referred friend is a date, not a person


def test_preferences_page_never_shows_another_member(client, program, member):
    other = MemberFactory(program=program, email="other@example.com")
    log_in(client, member)
    text = client.get(f"/p/{program.slug}/preferences?member={other.pk}").content.decode()
    assert member.email in text
    assert "other@example.com" not in text


def test_posts_are_csrf_protected(program, member):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    log_in(strict, member)
    response = strict.post(f"/p/{program.slug}/my-data/delete")
    assert response.status_code == 403
    assert not DeletionRequest.objects.exists()


def test_state_changes_are_post_only(client, program, member):
    log_in(client, member)
    assert client.get(f"/p/{program.slug}/my-data/delete").status_code == 405
    assert client.get(f"/p/{program.slug}/preferences/unsubscribe").status_code == 405


# -- preferences -----------------------------------------------------------------------------


def test_preferences_show_the_kinds_with_their_state(client, program, member):
    emails.opt_out(member_id=member.pk, kind="points_reminder", via="test")
    log_in(client, member)
    response = client.get(f"/p/{program.slug}/preferences")
    text = response.content.decode()
    assert response.status_code == 200
    assert "Points statement" in text  # page_words' names
    assert 'value="points_reminder" id="kind-points_reminder">' in text  # off
    assert 'value="points_earned" id="kind-points_earned" checked>' in text
    assert "login_link" not in text  # always on, not a choice
    assert "Offers and news reach you only if you tick this box" in text


def test_saving_preferences_turns_kinds_off_and_changes_consent_and_language(client, program, member):
    log_in(client, member)
    kinds = [info.kind.value for info in emails.preference_kinds() if info.kind.value != "points_earned"]
    response = client.post(f"/p/{program.slug}/preferences", {"kinds": kinds, "email_consent": "on", "language": "fr"})
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.language == "fr"
    assert member.email_consent is True
    assert set(EmailOptOut.objects.filter(member=member).values_list("kind", flat=True)) == {"points_earned"}
    assert emails.preferences_read(member_id=member.pk)["points_earned"] is False
    page = client.get(f"/p/{program.slug}/preferences").content.decode()
    assert "Vos choix sont enregistrés." in page  # the page follows the new language
    # Ticking it again opts back in.
    client.post(f"/p/{program.slug}/preferences", {"kinds": [*kinds, "points_earned"], "language": "fr"})
    assert not EmailOptOut.objects.filter(member=member).exists()
    member.refresh_from_db()
    assert member.email_consent is False


def test_an_unknown_kind_or_language_is_a_form_error(client, program, member):
    log_in(client, member)
    response = client.post(f"/p/{program.slug}/preferences", {"kinds": ["nope"], "language": "xx"})
    assert response.status_code == 200
    assert b'class="error"' in response.content
    member.refresh_from_db()
    assert member.language == ""
    assert not EmailOptOut.objects.exists()


def test_unsubscribe_from_everything_marketing(client, program, member):
    Member.objects.filter(pk=member.pk).update(email_consent=True)
    log_in(client, member)
    response = client.post(f"/p/{program.slug}/preferences/unsubscribe")
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.email_consent is False
    assert EmailOptOut.objects.filter(member=member, kind=EmailOptOut.ALL_MARKETING).exists()
    state = emails.preferences_read(member_id=member.pk)
    assert state["birthday"] is False  # a marketing kind
    assert state["points_earned"] is True  # account emails keep coming
    assert "you will no longer receive offers and news" in client.get(f"/p/{program.slug}/preferences").content.decode()


def test_preferences_page_takes_at_most_ten_statements(client, program, member):
    emails.opt_out(member_id=member.pk, kind="points_reminder", via="test")
    log_in(client, member)
    client.get(f"/p/{program.slug}/preferences")  # warm the per-process caches
    for page in ("preferences", "my-data"):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/p/{program.slug}/{page}")
        assert response.status_code == 200
        assert len(queries) <= MAX_STATEMENTS, [q["sql"] for q in queries.captured_queries]


# -- my data ---------------------------------------------------------------------------------


def test_the_json_export_holds_every_section(client, program, rich_member):
    EmailMessage.objects.filter(member=rich_member).update(to_email=rich_member.email, subject="Hello Léa")
    log_in(client, rich_member)
    response = client.get(f"/p/{program.slug}/my-data/export.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="')
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    data = json.loads(response.content)
    assert set(data) == set(selectors_prefs.COLUMNS)
    profile = data["profile"][0]
    assert profile["email"] == "lea@example.com"
    assert profile["first_name"] == "Léa"
    assert profile["birthday"] == "1990-04-02"
    assert profile["points_available"] == rich_member.available
    assert {row["order_id"] for row in data["activities"]} >= {"ORD-1", "ORD-2"}
    assert len(data["ledger"]) == LedgerEntry.objects.filter(member=rich_member).count()
    assert sum(row["points"] for row in data["ledger"]) == rich_member.available + rich_member.pending
    assert "Internal: angry VIP" not in response.content.decode()  # staff notes stay internal
    assert data["coupons"][0]["reward"] == "Free espresso"
    assert data["cards"][0]["status"] == "active"
    assert len(data["referrals"]) == 1
    assert set(data["referrals"][0]) == {"friend_joined_at"}
    assert any(row["subject"] == "Hello Léa" for row in data["emails"])
    assert {row["kind"] for row in data["email_opt_outs"]} == {"birthday"}


def test_the_csv_export_is_a_zip_of_one_csv_per_section(client, program, rich_member):
    log_in(client, rich_member)
    response = client.get(f"/p/{program.slug}/my-data/export.zip")
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == sorted(f"{name}.csv" for name in selectors_prefs.COLUMNS)
    for name, columns in selectors_prefs.COLUMNS.items():
        rows = list(csv.reader(io.StringIO(archive.read(f"{name}.csv").decode("utf-8-sig"))))
        assert tuple(rows[0]) == columns
    profile = list(csv.DictReader(io.StringIO(archive.read("profile.csv").decode("utf-8-sig"))))
    assert profile[0]["first_name"] == "Léa"
    ledger_rows = list(csv.DictReader(io.StringIO(archive.read("ledger.csv").decode("utf-8-sig"))))
    assert len(ledger_rows) == LedgerEntry.objects.filter(member=rich_member).count()


def test_a_cell_is_never_read_as_a_formula(program):
    assert selectors_prefs._cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert selectors_prefs._cell(-5) == -5


def test_asking_for_deletion_twice_makes_one_request(client, program, member):
    log_in(client, member)
    assert client.post(f"/p/{program.slug}/my-data/delete").status_code == 302
    client.post(f"/p/{program.slug}/my-data/delete")
    assert DeletionRequest.objects.filter(member=member, status="open").count() == 1
    text = client.get(f"/p/{program.slug}/my-data").content.decode()
    assert "Our team will handle your request" in text
    assert "Ask to delete my data" not in text


# -- anonymisation ---------------------------------------------------------------------------


def _verify_ledger() -> str:
    out = StringIO()
    call_command("verify_ledger", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_staff_confirm_in_the_admin_and_the_member_is_anonymised(client, program, rich_member):
    log_in(client, rich_member)
    old_link = None
    services.login_link_send(program=program, email=rich_member.email)
    old_link = link_of(rich_member)
    client.post(f"/p/{program.slug}/my-data/delete")
    request = DeletionRequest.objects.get(member=rich_member)
    user_id = rich_member.user_id
    EmailMessage.objects.filter(member=rich_member).update(to_email=rich_member.email, subject="Hello Léa")
    entries_before = list(LedgerEntry.objects.filter(member=rich_member).order_by("id").values_list("id", "points"))
    balance_before = (rich_member.available, rich_member.pending, rich_member.lifetime_earned)

    staff = StaffFactory(is_superuser=True)
    admin = type(client)()
    admin.force_login(staff)
    changelist = reverse("admin:loyalty_deletionrequest_changelist")
    assert admin.get(changelist).status_code == 200
    response = admin.post(changelist, {"action": "confirm", "_selected_action": [request.pk]})
    assert response.status_code == 302

    request.refresh_from_db()
    assert request.status == "confirmed"
    assert request.decided_by == staff
    member = Member.objects.get(pk=rich_member.pk)
    assert (member.email, member.first_name, member.last_name, member.birthday, member.external_id) == (
        "",
        "",
        "",
        None,
        None,
    )
    assert member.referral_code != rich_member.referral_code
    assert member.status == "blocked"
    assert member.anonymised_at is not None
    assert not member.email_consent
    assert member.user_id is None
    assert not get_user_model().objects.filter(pk=user_id).exists()
    assert not Card.objects.filter(member=member, status="active").exists()
    assert Card.objects.filter(member=member, status="blocked").exists()
    # Every address is blanked and nothing else will go out, except the captured answer to the
    # request (tests/portal/test_deletion_emails.py), which erases its address once sent.
    others = EmailMessage.objects.filter(member=member).exclude(kind="deletion_confirmed")
    assert not others.exclude(to_email="").exists()
    assert not others.filter(status="queued").exists()
    assert EmailMessage.objects.get(member=member, kind="deletion_confirmed").to_email == "lea@example.com"
    assert EmailOptOut.objects.filter(member=member).exists()  # kept: a preference, no address
    # The ledger: untouched, balanced, verifiable.
    assert list(LedgerEntry.objects.filter(member=member).order_by("id").values_list("id", "points")) == entries_before
    assert (member.available, member.pending, member.lifetime_earned) == balance_before
    assert "Traceback" not in _verify_ledger()

    # The member can no longer log in: the session is gone, the old link and the address too.
    response = client.get(f"/p/{program.slug}/my-data")
    assert response.status_code == 302
    assert response["Location"] == f"/p/{program.slug}/login"
    client.get(old_link)
    assert client.post(old_link).status_code == 400
    assert services.login_link_send(program=program, email="lea@example.com") is None


def test_declining_leaves_the_member_alone(program, member, staff):
    request = ledger.deletion_request_create(member=member)
    ledger.deletion_request_decide(request=request, confirm=False, actor=staff, note="duplicate")
    member.refresh_from_db()
    assert member.anonymised_at is None
    assert member.email
    request.refresh_from_db()
    assert request.status == "declined"
    # A decided request stays decided; a new one may be made.
    assert ledger.deletion_request_decide(request=request, confirm=True).status == "declined"
    assert ledger.deletion_request_create(member=member).pk != request.pk


def test_anonymising_is_idempotent_and_the_profile_stays_erased(program, member):
    ledger.points_adjust(program=program, member_id=member.pk, points=40, reason="gift", source="t")
    first = ledger.member_anonymise(member=member)
    again = ledger.member_anonymise(member=Member.objects.get(pk=member.pk))
    assert again.anonymised_at == first.anonymised_at
    with pytest.raises(errors.InvalidInput):
        ledger.member_update(member=again, email="back@example.com")
    with pytest.raises(errors.InvalidInput):
        ledger.deletion_request_create(member=again)
    assert "Traceback" not in _verify_ledger()


def test_verify_ledger_stays_clean_after_anonymising_with_a_debt(program, member):
    ledger.points_adjust(program=program, member_id=member.pk, points=-30, reason="debt", source="t")
    ledger.member_anonymise(member=member)
    member.refresh_from_db()
    assert member.available == -30
    err = StringIO()
    call_command("verify_ledger", stdout=StringIO(), stderr=err)  # exits non-zero on a mismatch
    assert err.getvalue() == ""
