"""The SMTP path end to end: Django's SMTP backend hands one outbox message to a real SMTP
server (aiosmtpd) started by the test; the message arrives with its headers and both parts."""

import email
import email.policy

import pytest
from aiosmtpd.controller import Controller
from django.db import transaction

from notifications import emails
from notifications.models import EmailMessage
from tests.integration.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class Sink:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_sink(settings):
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield sink
    controller.stop()


def test_one_message_goes_through_a_real_smtp_server(program, member, smtp_sink):
    with transaction.atomic():
        message_id = emails.message_queue(program_id=program.id, member_id=member.id, kind="welcome", source="enrolled")
    row = EmailMessage.objects.get(pk=message_id)
    assert row.status == "sent", row.last_error

    [(_mail_from, rcpt_tos, content)] = smtp_sink.received
    assert rcpt_tos == [member.email]
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert parsed["X-Loyalty-Message"] == str(message_id)
    assert parsed["To"] == member.email
    assert program.name in parsed["From"]
    assert parsed["Subject"] == row.subject
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(parsed["List-Unsubscribe"]).strip()  # a long header is folded onto the next line
    assert link.startswith("<http")
    assert link.endswith("/one-click>")
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    html = parsed.get_body(preferencelist=("html",)).get_content()
    assert member.first_name in text
    assert "<html" in html.lower()
    assert program.name in html
