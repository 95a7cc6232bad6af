"""Delivery guarantees of the email outbox (notifications/emails.py): one send per message
whatever racing workers do, at least once when a worker dies between sending and recording,
retries with backoff then `failed`, and `deliver_outbox` idempotent."""

import datetime as dt
import threading

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from notifications import emails
from notifications.models import EmailMessage
from tests.loyalty.factories import MemberFactory

from .email_backends import Gate, Script

pytestmark = pytest.mark.django_db(transaction=True)

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def no_scripted_failures():
    Script.failures = 0
    yield
    Script.failures = 0


@pytest.fixture
def not_sent_on_commit(monkeypatch):
    """Rows are queued but no task runs after commit: the test sends them itself."""
    monkeypatch.setattr(emails, "_send_later", lambda ids: None)


def queue(program, member, source="enrolled", kind="welcome", now=T0):
    with transaction.atomic():
        return emails.message_queue(program_id=program.id, member_id=member.id, kind=kind, source=source, now=now)


def outbox_ids():
    return [m.extra_headers["X-Loyalty-Message"] for m in mail.outbox]


def in_thread(func, results):
    def run():
        try:
            results.append(func())
        finally:
            connection.close()

    return threading.Thread(target=run)


# -- racing workers -----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_racing_on_one_message_send_it_once(program, member, not_sent_on_commit, settings):
    settings.EMAIL_BACKEND = "tests.notifications.email_backends.HeldBackend"
    Gate.reset()
    message_id = queue(program, member)
    results = []
    first = in_thread(lambda: emails.message_send(message_id=message_id, now=T0), results)
    first.start()
    try:
        assert Gate.entered.wait(timeout=30)  # the first worker is inside the send
        # The second worker (its own connection) finds the row leased: nothing to do.
        second = []
        other = in_thread(lambda: emails.message_send(message_id=message_id, now=T0), second)
        other.start()
        other.join(timeout=30)
        assert second == [None]
        # deliver_outbox at the same moment does not take it either.
        assert emails.outbox_emails_deliver(now=T0).attempted == 0
    finally:
        Gate.release.set()
        first.join(timeout=30)
    assert [r.status for r in results] == ["sent"]
    assert outbox_ids() == [str(message_id)]
    row = EmailMessage.objects.get(pk=message_id)
    assert (row.status, row.attempts) == ("sent", 1)


@pytest.mark.slow
def test_two_concurrent_deliver_runs_send_each_message_once(program, not_sent_on_commit):
    ids = [queue(program, MemberFactory(program=program), source=f"s{i}") for i in range(8)]
    barrier = threading.Barrier(2)

    def run():
        barrier.wait(timeout=30)
        return emails.outbox_emails_deliver(now=T0)

    results = []
    threads = [in_thread(run, results) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(r.sent for r in results) == 8
    assert sorted(outbox_ids()) == sorted(str(i) for i in ids)  # each once
    assert set(EmailMessage.objects.values_list("attempts", flat=True)) == {1}


# -- a worker killed between sending and recording --------------------------------------------


def test_a_worker_killed_after_sending_leaves_the_message_due_after_the_lease(
    program, member, not_sent_on_commit, monkeypatch
):
    message_id = queue(program, member)
    finish = emails._finish

    def die_before_recording(pk, **fields):
        if fields.get("status") == EmailMessage.Status.SENT:
            raise SystemExit("worker killed")  # not an Exception: nothing in the send path catches it
        return finish(pk, **fields)

    monkeypatch.setattr(emails, "_finish", die_before_recording)
    with pytest.raises(SystemExit):
        emails.message_send(message_id=message_id, now=T0)
    monkeypatch.setattr(emails, "_finish", finish)

    assert outbox_ids() == [str(message_id)]  # it went out
    row = EmailMessage.objects.get(pk=message_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("queued", 1, T0 + emails.LEASE)

    # While the lease runs nobody sends it again; after it, deliver_outbox does (at least once).
    assert emails.outbox_emails_deliver(now=T0 + emails.LEASE - dt.timedelta(seconds=1)).attempted == 0
    assert emails.outbox_emails_deliver(now=T0 + emails.LEASE).sent == 1
    assert outbox_ids() == [str(message_id), str(message_id)]  # the duplicate is traceable
    assert mail.outbox[1].metadata == {"outbox_id": str(message_id)}
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)
    assert emails.outbox_emails_deliver(now=T0 + 2 * emails.LEASE).attempted == 0


def test_a_worker_interrupted_during_the_send_also_retries_after_the_lease(
    program, member, not_sent_on_commit, monkeypatch
):
    message_id = queue(program, member)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mail.EmailMultiAlternatives, "send", interrupted)
    with pytest.raises(KeyboardInterrupt):
        emails.message_send(message_id=message_id, now=T0)
    monkeypatch.undo()
    assert EmailMessage.objects.get(pk=message_id).status == "queued"
    assert emails.outbox_emails_deliver(now=T0 + emails.LEASE).sent == 1


# -- ESP errors: retries with backoff, then failed ----------------------------------------------


def test_esp_errors_are_retried_with_growing_backoff_then_failed(program, member, not_sent_on_commit, settings):
    settings.EMAIL_BACKEND = "tests.notifications.email_backends.FailingBackend"
    Script.failures = 100
    message_id = queue(program, member)
    now, waits = T0, []
    assert emails.message_send(message_id=message_id, now=now).status == "queued"
    while (row := EmailMessage.objects.get(pk=message_id)).status == "queued":
        assert "503" in row.last_error
        waits.append(row.next_attempt_at - now)
        # Not before it is due; then one attempt.
        assert emails.outbox_emails_deliver(now=row.next_attempt_at - dt.timedelta(seconds=1)).attempted == 0
        now = row.next_attempt_at
        assert emails.outbox_emails_deliver(now=now).attempted == 1
    assert row.status == "failed"
    assert row.attempts == emails.MAX_ATTEMPTS
    assert row.next_attempt_at is None
    assert len(waits) == emails.MAX_ATTEMPTS - 1
    assert waits == sorted(waits)
    assert waits[-1] > 10 * waits[0]
    assert mail.outbox == []
    assert emails.outbox_emails_deliver(now=now + dt.timedelta(days=30)).attempted == 0


def test_a_transient_esp_error_is_retried_and_then_sent(program, member, not_sent_on_commit, settings):
    settings.EMAIL_BACKEND = "tests.notifications.email_backends.FailingBackend"
    Script.failures = 1
    message_id = queue(program, member)
    first = emails.message_send(message_id=message_id, now=T0)
    assert first.status == "queued"
    assert first.retry_in is not None
    assert emails.outbox_emails_deliver(now=T0 + first.retry_in).sent == 1
    row = EmailMessage.objects.get(pk=message_id)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, "")
    assert outbox_ids() == [str(message_id)]


# -- deliver_outbox ---------------------------------------------------------------------------


def test_deliver_outbox_twice_sends_nothing_new(program, not_sent_on_commit):
    for i in range(3):
        queue(program, MemberFactory(program=program), source=f"s{i}")
    call_command("deliver_outbox", "--now", T0.isoformat(), stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert len(mail.outbox) == 3
    call_command("deliver_outbox", "--now", (T0 + dt.timedelta(hours=1)).isoformat(), stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert len(mail.outbox) == 3
    assert set(EmailMessage.objects.values_list("status", flat=True)) == {"sent"}


def test_a_message_queued_in_the_future_waits_for_its_time(program, member, not_sent_on_commit):
    queue(program, member, now=T0 + dt.timedelta(hours=1))
    assert emails.outbox_emails_deliver(now=T0).attempted == 0
    assert emails.outbox_emails_deliver(now=T0 + dt.timedelta(hours=1)).sent == 1


def test_resend_sends_a_sent_message_again(program, member):
    message_id = queue(program, member, now=timezone.now())
    assert len(mail.outbox) == 1
    assert emails.messages_resend(message_ids=[message_id]) == 1
    assert outbox_ids() == [str(message_id), str(message_id)]
    assert EmailMessage.objects.get(pk=message_id).status == "sent"
