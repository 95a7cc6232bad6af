"""The member is told what staff decided on their request to delete their data: a refusal with
staff's reason, or the confirmation, written and addressed just before the anonymisation and
still delivered after it (its address erased once sent)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from loyalty import services as ledger
from loyalty.models import DeletionRequest, Member
from notifications import emails
from notifications.models import EmailMessage
from tests.loyalty.factories import MemberFactory, StaffFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:loyalty_deletionrequest_changelist"


@pytest.fixture
def member(program):
    member = MemberFactory(program=program, first_name="Léa", email="lea@example.com")
    ledger.points_adjust(program=program, member_id=member.pk, points=120, reason="t", source="t")
    member.refresh_from_db()
    return member


@pytest.fixture
def admin_client(client):
    client.force_login(StaffFactory(is_superuser=True))
    return client


def _waiting(member, days_ago=3):
    return ledger.deletion_request_create(member=member, now=timezone.now() - dt.timedelta(days=days_ago))


def test_confirming_emails_the_member_at_the_address_they_had(
    admin_client, program, member, django_capture_on_commit_callbacks
):
    request = _waiting(member)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse(CHANGELIST), {"action": "confirm", "_selected_action": [request.pk]})
    assert response.status_code == 302
    assert Member.objects.get(pk=member.pk).email == ""  # anonymised
    [sent] = [m for m in mail.outbox if m.to == ["lea@example.com"]]
    assert sent.subject == f"Your data has been deleted from {program.name}"
    assert "Hello Léa" in sent.body  # written with the data of the moment before the erasure
    assert "120" in sent.body  # the points left, which can no longer be used
    assert "List-Unsubscribe" not in sent.extra_headers
    row = EmailMessage.objects.get(member_id=member.pk, kind="deletion_confirmed")
    assert row.status == "sent"
    # Sent: the address and the rendering are gone from the outbox.
    assert (row.to_email, row.subject) == ("", "")
    assert "rendered" not in row.data
    assert "Léa" not in str(row.data)
    assert set(row.data) == {"requested_on", "erased_on"}


def test_a_confirmation_not_sent_at_once_survives_the_anonymisation(program, member):
    """No worker at commit (the broker down, the process killed): the row keeps its captured
    address and rendering through `member_messages_erase`, and deliver_outbox sends it later."""
    request = _waiting(member)
    ledger.deletion_request_decide(request=request, confirm=True)  # on-commit hooks do not run here
    row = EmailMessage.objects.get(member_id=member.pk, kind="deletion_confirmed")
    assert row.status == "queued"
    assert row.to_email == "lea@example.com"
    assert "Léa" in row.data["rendered"]["text"]
    assert Member.objects.get(pk=member.pk).first_name == ""
    result = emails.outbox_emails_deliver(now=timezone.now() + dt.timedelta(minutes=1))
    assert result.sent >= 1
    assert [m.to for m in mail.outbox] == [["lea@example.com"]]
    row.refresh_from_db()
    assert (row.status, row.to_email) == ("sent", "")
    assert "rendered" not in row.data


def test_a_confirmation_that_fails_for_good_forgets_the_address(program, member, settings):
    request = _waiting(member)
    ledger.deletion_request_decide(request=request, confirm=True)
    row = EmailMessage.objects.get(member_id=member.pk, kind="deletion_confirmed")
    EmailMessage.objects.filter(pk=row.pk).update(attempts=emails.MAX_ATTEMPTS)
    settings.EMAIL_BACKEND = "tests.portal.test_deletion_emails.RefusingBackend"
    emails.outbox_emails_deliver(now=timezone.now() + dt.timedelta(minutes=1))
    row.refresh_from_db()
    assert row.status == "failed"
    assert row.to_email == ""
    assert "rendered" not in row.data


class RefusingBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionError("the ESP is down")


def test_declining_asks_for_the_reason_then_emails_it(admin_client, program, member):
    request = _waiting(member)
    url = reverse(CHANGELIST)
    first = admin_client.post(url, {"action": "decline", "_selected_action": [request.pk]})
    assert first.status_code == 200
    page = first.content.decode()
    assert "Say why you decline" in page
    assert str(member) in page
    # No reason: the form says so and nothing is decided.
    empty = admin_client.post(url, {"action": "decline", "_selected_action": [request.pk], "apply": "1", "reason": ""})
    assert empty.status_code == 200
    assert "This field is required" in empty.content.decode()
    assert DeletionRequest.objects.get(pk=request.pk).status == "open"
    reason = "Your order A-17 is still open: we can delete your data once it is delivered."
    done = admin_client.post(
        url, {"action": "decline", "_selected_action": [request.pk], "apply": "1", "reason": reason}
    )
    assert done.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.note) == ("declined", reason)
    assert Member.objects.get(pk=member.pk).email == "lea@example.com"  # left alone
    row = EmailMessage.objects.get(member_id=member.pk, kind="deletion_declined")
    assert row.data["reason"] == reason
    emails.message_send(message_id=row.pk)
    [sent] = mail.outbox
    assert sent.to == ["lea@example.com"]
    assert reason in sent.body
    assert "We cannot do it at the moment" in sent.body


def test_a_french_member_reads_the_answers_in_french(program, member):
    member.language = "fr"
    member.save(update_fields=["language"])
    declined = _waiting(member)
    ledger.deletion_request_decide(request=declined, confirm=False, note="Commande en cours")
    row = EmailMessage.objects.get(member_id=member.pk, kind="deletion_declined")
    emails.message_send(message_id=row.pk)
    assert "Nous ne pouvons pas le faire pour le moment" in mail.outbox[-1].body
    assert "Motif : Commande en cours" in mail.outbox[-1].body
    confirmed = _waiting(member)
    ledger.deletion_request_decide(request=confirmed, confirm=True)
    row = EmailMessage.objects.get(member_id=member.pk, kind="deletion_confirmed")
    emails.message_send(message_id=row.pk)
    assert mail.outbox[-1].subject.startswith("Vos données ont été supprimées")
    assert "Bonjour Léa" in mail.outbox[-1].body


def test_the_answers_cannot_be_switched_off_nor_unsubscribed(program, member):
    emails.email_settings_save(program=program, enabled_kinds=[])
    for kind in ("deletion_confirmed", "deletion_declined"):
        assert emails.program_sends(program.pk, kind)
        assert kind not in {info.kind.value for info in emails.preference_kinds()}


def test_the_demo_has_a_waiting_and_a_declined_deletion_request(db):
    import io

    from django.core.management import call_command

    call_command("load_demo", stdout=io.StringIO(), members=25)
    requests = DeletionRequest.objects.filter(program__slug="demo")  # each demo brand has its two
    assert sorted(requests.values_list("status", flat=True)) == ["declined", "open"]
    declined = requests.get(status="declined")
    assert EmailMessage.objects.filter(member_id=declined.member_id, kind="deletion_declined").exists()
    call_command("load_demo", stdout=io.StringIO(), members=25)  # once
    assert requests.count() == 2
