"""Mailgun's tracking webhook (anymail, HMAC signature checked) updates the outbox: statuses
move forward only, a hard bounce or a complaint suppresses the address, a bad signature
changes nothing."""

import hashlib
import hmac
import json
import time
import uuid

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from notifications import emails
from notifications.models import EmailMessage, EmailSuppression

pytestmark = pytest.mark.django_db(transaction=True)

SIGNING_KEY = "test-signing-key-0123456789"
URL = "/anymail/mailgun/tracking/"


@pytest.fixture(autouse=True)
def mailgun(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


def _queue(program, member, kind="welcome", source="enrolled"):
    with transaction.atomic():
        return emails.message_queue(program_id=program.id, member_id=member.id, kind=kind, source=source)


@pytest.fixture
def sent(program, member):
    message = EmailMessage.objects.get(pk=_queue(program, member))
    assert message.status == "sent"
    return message


def mailgun_event(event, *, message, key=SIGNING_KEY, recipient=None, **fields):
    """A Mailgun webhook body as documented (JSON: a signature block and event-data), signed
    with `key` (HMAC-SHA256 of timestamp + token)."""
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    data = {
        "event": event,
        "id": uuid.uuid4().hex[:22],
        "timestamp": time.time(),
        "recipient": recipient or message.to_email,
        "message": {"headers": {"message-id": "20260203192638.000be97f99f8cea1@mg.example.com"}},
        "user-variables": {"outbox_id": str(message.pk)},
        "tags": [message.kind],
        "delivery-status": {"code": 250, "message": "OK", "description": ""},
        **fields,
    }
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": data}


def post(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def test_a_signed_delivered_event_marks_the_message_delivered(client, sent):
    response = post(client, mailgun_event("delivered", message=sent))
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == "delivered"
    assert sent.status_at is not None


def test_a_badly_signed_event_is_refused_and_changes_nothing(client, sent):
    body = mailgun_event("failed", message=sent, severity="permanent", reason="bounce", key="someone-else")
    response = post(client, body)
    assert response.status_code == 400
    sent.refresh_from_db()
    assert sent.status == "sent"
    assert not EmailSuppression.objects.exists()


def test_a_tampered_body_fails_the_signature(client, sent):
    body = mailgun_event("delivered", message=sent)
    body["signature"]["timestamp"] = str(int(body["signature"]["timestamp"]) + 1)
    assert post(client, body).status_code == 400
    sent.refresh_from_db()
    assert sent.status == "sent"


def test_an_event_without_a_signature_block_is_refused(client, sent):
    body = mailgun_event("delivered", message=sent)
    del body["signature"]
    assert post(client, body).status_code == 400


def test_the_webhook_answers_503_when_mailgun_is_not_configured(client, sent, settings):
    settings.ANYMAIL = {}
    assert post(client, mailgun_event("delivered", message=sent)).status_code == 503
    sent.refresh_from_db()
    assert sent.status == "sent"


def test_basic_auth_is_required_when_a_webhook_secret_is_set(client, sent, settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY, "WEBHOOK_SECRET": "hook:s3cret"}
    assert post(client, mailgun_event("delivered", message=sent)).status_code == 400
    import base64

    auth = "Basic " + base64.b64encode(b"hook:s3cret").decode()
    response = client.post(
        URL,
        data=json.dumps(mailgun_event("delivered", message=sent)),
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
    )
    assert response.status_code == 200
    sent.refresh_from_db()
    assert sent.status == "delivered"


def test_a_hard_bounce_suppresses_the_address_and_the_next_message_is_not_sent(client, program, member, sent):
    body = mailgun_event(
        "failed",
        message=sent,
        severity="permanent",
        reason="bounce",
        **{"delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": "No such user"}},
    )
    assert post(client, body).status_code == 200
    sent.refresh_from_db()
    assert sent.status == "bounced"
    assert "No such user" in sent.last_error
    suppression = EmailSuppression.objects.get()
    assert suppression.email == member.email.lower()
    assert suppression.reason == "bounced"

    before = len(mail.outbox)
    following = EmailMessage.objects.get(pk=_queue(program, member, kind="points_added", source="adjust:1"))
    assert following.status == "suppressed"
    assert "suppressed" in following.last_error
    assert len(mail.outbox) == before


def test_a_soft_bounce_changes_nothing(client, sent):
    body = mailgun_event("failed", message=sent, severity="temporary", reason="generic")
    assert post(client, body).status_code == 200
    sent.refresh_from_db()
    assert sent.status == "sent"
    assert not EmailSuppression.objects.exists()


def test_a_complaint_suppresses_the_address(client, sent):
    assert post(client, mailgun_event("complained", message=sent)).status_code == 200
    sent.refresh_from_db()
    assert sent.status == "complained"
    assert EmailSuppression.objects.get().reason == "complained"


def test_a_late_delivered_event_does_not_undo_a_bounce(client, sent):
    post(client, mailgun_event("failed", message=sent, severity="permanent", reason="bounce"))
    post(client, mailgun_event("delivered", message=sent))
    sent.refresh_from_db()
    assert sent.status == "bounced"


def test_a_repeated_event_changes_nothing_the_second_time(sent):
    first = emails.message_tracked(event_type="delivered", outbox_id=sent.pk)
    second = emails.message_tracked(event_type="delivered", outbox_id=sent.pk)
    assert (first.changed, second.changed) == (True, False)
    assert second.status == "delivered"


def test_opens_and_clicks_change_no_status(client, sent):
    assert post(client, mailgun_event("opened", message=sent)).status_code == 200
    sent.refresh_from_db()
    assert sent.status == "sent"


def test_an_event_is_matched_by_the_esp_message_id_without_metadata(sent):
    EmailMessage.objects.filter(pk=sent.pk).update(esp_message_id="<abc.123@mg.example.com>")
    outcome = emails.message_tracked(event_type="delivered", esp_message_id="<abc.123@mg.example.com>")
    assert outcome.message_id == sent.pk
    sent.refresh_from_db()
    assert sent.status == "delivered"


def test_an_event_for_an_unknown_message_is_accepted_and_a_bounce_still_suppresses(client, sent):
    body = mailgun_event("failed", message=sent, severity="permanent", reason="bounce", recipient="gone@example.com")
    body["event-data"]["user-variables"] = {}
    assert post(client, body).status_code == 200  # Mailgun would retry anything else
    sent.refresh_from_db()
    assert sent.status == "sent"
    assert EmailSuppression.objects.filter(email="gone@example.com").exists()


def test_a_message_queued_again_keeps_its_status_on_a_late_event(sent):
    # As after `messages_resend` (or a worker that died after sending), before the next send.
    EmailMessage.objects.filter(pk=sent.pk).update(status="queued", next_attempt_at=timezone.now())
    emails.message_tracked(event_type="delivered", outbox_id=sent.pk)
    sent.refresh_from_db()
    assert sent.status == "queued"
