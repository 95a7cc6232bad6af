"""The emails part of `load_demo` (notifications/demo.py): every kind in the outbox with
realistic statuses, nothing sent for real, the history's messages settled, once."""

import pytest
from django.core import mail
from django.utils import timezone

from notifications import demo, emails
from notifications.email_kinds import EmailKind
from notifications.models import EmailMessage, EmailSuppression
from tests.loyalty.factories import MemberFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_members(program, monkeypatch):
    # As under `make run`: load_demo runs before the worker, whose tasks find the rows done.
    monkeypatch.setattr(emails, "_send_later", lambda ids: None)
    return [MemberFactory(program=program, email_consent=i % 2 == 0) for i in range(8)]


def test_the_demo_outbox_holds_every_kind_with_realistic_statuses(program, demo_members):
    history = emails.message_queue(
        program_id=program.pk, member_id=demo_members[0].pk, kind="welcome", source="enrolled", now=timezone.now()
    )
    line = demo.demo_emails_load(program=program, now=timezone.now())
    assert "1 history messages settled" in line

    assert EmailMessage.objects.get(pk=history).status == "delivered"
    rows = EmailMessage.objects.filter(source__startswith=demo.DEMO_SOURCE)
    assert {row.kind for row in rows} == {kind.value for kind in EmailKind}
    statuses = {row.status for row in rows}
    assert statuses == {"sent", "delivered", "bounced", "suppressed", "queued"}
    bounced = rows.get(status="bounced")
    assert EmailSuppression.objects.filter(email=bounced.to_email, reason="bounced").exists()
    waiting = rows.get(status="queued")
    assert waiting.attempts > 1
    assert "503" in waiting.last_error
    assert waiting.next_attempt_at > timezone.now()
    assert rows.get(status="suppressed").kind == "birthday"
    assert all(row.esp_message_id for row in rows.filter(status__in=["sent", "delivered", "bounced"]))
    assert mail.outbox == []  # the simulated ESP sends nothing


def test_the_demo_emails_are_made_once(program, demo_members):
    demo.demo_emails_load(program=program, now=timezone.now())
    count = EmailMessage.objects.count()
    assert "left as it is" in demo.demo_emails_load(program=program, now=timezone.now())
    assert EmailMessage.objects.count() == count
