"""The email outbox's core: a message row is written in the event's transaction, once per
(member, kind, source), and sent after commit through the email backend, rendered in a sandbox
in the program's branding."""

import datetime as dt
from decimal import Decimal

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from loyalty import services as ledger
from notifications import email_render, emails
from notifications.models import EmailMessage, EmailOptOut, EmailSettings
from tests.loyalty.factories import MemberFactory
from tests.workflows.factories import EarningRuleFactory
from workflows import services as workflows

pytestmark = pytest.mark.django_db(transaction=True)


def _enrol(program, **fields):
    member, _created = ledger.member_enrol(
        program=program,
        external_id=fields.pop("external_id", "shop-1"),
        email=fields.pop("email", "ada@example.com"),
        first_name=fields.pop("first_name", "Ada"),
        channel="online",
        **fields,
    )
    return member


def test_enrolment_queues_and_sends_a_welcome(program):
    member = _enrol(program)
    message = EmailMessage.objects.get(member=member, kind="welcome")
    assert message.status == "sent"
    assert message.to_email == "ada@example.com"
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["ada@example.com"]
    assert sent.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent.extra_headers["List-Unsubscribe"].startswith("<http")
    html = sent.alternatives[0][0]
    assert program.name in html
    assert program.brand_color.lower() in html.lower()


def test_a_rolled_back_enrolment_leaves_no_message(program):
    def enrol_then_fail():
        with transaction.atomic():
            _enrol(program)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        enrol_then_fail()
    assert not EmailMessage.objects.exists()
    assert mail.outbox == []


def test_a_switched_off_kind_writes_nothing(program):
    EmailSettings.objects.create(program=program, enabled_kinds=[])
    _enrol(program)
    assert not EmailMessage.objects.exists()


def test_one_points_earned_message_per_activity(program):
    EarningRuleFactory(program=program, name="Points per euro", kind="per_amount", points=None)
    EarningRuleFactory(program=program, name="Visit bonus", kind="fixed", points=50)
    member = MemberFactory(program=program)
    workflows.activity_report(
        program=program,
        member=member,
        type="purchase",
        occurred_at=timezone.now() - dt.timedelta(minutes=1),
        order_id="A-1",
        amount=Decimal("20.00"),
    )
    messages = list(EmailMessage.objects.filter(member=member, kind="points_earned"))
    assert len(messages) == 1
    assert messages[0].data["points"] == 70
    assert {e["reason"] for e in messages[0].data["entries"]} == {"Points per euro", "Visit bonus"}
    assert messages[0].status == "sent"
    assert "70" in mail.outbox[-1].body


def test_a_hostile_name_cannot_inject_html(program):
    member = _enrol(program, first_name='<script>alert("x")</script>')
    html = mail.outbox[0].alternatives[0][0]
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html
    assert member.first_name in mail.outbox[0].body  # the text part is plain text


def test_marketing_kind_needs_consent(program, member):
    assert not member.email_consent
    with transaction.atomic():
        written = emails.message_queue(program_id=program.id, member_id=member.id, kind="birthday", source="2026")
    assert written is None
    member.email_consent = True
    member.save()
    with transaction.atomic():
        written = emails.message_queue(program_id=program.id, member_id=member.id, kind="birthday", source="2026")
    assert written is not None
    assert EmailMessage.objects.get(pk=written).status == "sent"


def test_opt_out_suppresses_at_send_time(program, member):
    member.email_consent = True
    member.save()
    EmailOptOut.objects.create(member=member, kind="birthday", created_at=timezone.now())
    with transaction.atomic():
        written = emails.message_queue(program_id=program.id, member_id=member.id, kind="birthday", source="2026")
    message = EmailMessage.objects.get(pk=written)
    assert message.status == "suppressed"
    assert "unsubscribed" in message.last_error
    assert mail.outbox == []


def test_same_source_is_one_message(program, member):
    for _ in range(3):
        with transaction.atomic():
            emails.message_queue(program_id=program.id, member_id=member.id, kind="points_added", source="entry:1")
    assert EmailMessage.objects.filter(member=member, kind="points_added").count() == 1
    assert len(mail.outbox) == 1


def test_template_problems_name_unknown_variables_and_tags():
    assert email_render.template_problems("Hi {{ member.first_name }} {{ points }}", "points_earned") == []
    problems = email_render.template_problems("{{ member.password }}", "points_earned")
    assert "member.password" in problems[0]
    assert "Template error" in email_render.template_problems("{% if %}", "welcome")[0]
    assert "cannot be used" in email_render.template_problems('{% include "x.html" %}', "welcome")[0]
    assert email_render.template_problems("{% for e in entries %}{{ e.points }}{% endfor %}", "points_earned") == []
    assert (
        "e.secret"
        in email_render.template_problems("{% for e in entries %}{{ e.secret }}{% endfor %}", "points_earned")[0]
    )


def test_a_test_send_for_a_real_member_carries_no_working_unsubscribe_link(program, member):
    emails.send_test_email(program=program, kind="welcome", to="staff@example.com", member=member, data={})
    sent = mail.outbox[-1]
    assert sent.subject.startswith("[TEST]")
    assert emails.unsubscribe_token(member_id=member.pk, kind="welcome") not in sent.body
    assert "/e/unsubscribe/" not in sent.body


def test_with_a_broker_queued_ids_are_published_in_batches_by_the_send_buffer(settings, monkeypatch):
    """A request only appends to the process's buffer; the buffer's thread publishes one batch."""
    import threading

    published: list[list[int]] = []
    done = threading.Event()

    def publish(ids):
        published.append(list(ids))
        done.set()

    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(emails, "_send_batches_later", publish)
    emails._send_later([11])
    emails._send_later([12, 13])
    assert done.wait(timeout=60)  # a generous bound: the thread wakes within BUFFER_SECONDS
    emails._buffer.flush()  # whatever a slow machine left for a second round
    assert sorted(i for batch in published for i in batch) == [11, 12, 13]
