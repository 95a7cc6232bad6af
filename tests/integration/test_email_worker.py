"""One member email end to end through a real Celery worker on Redis, started and stopped by
the test: the row is queued in a transaction, the send task travels through the broker, the
worker (its own process, on the test database) sends it through Django's file backend and
marks it sent. Skipped when no Redis answers (`make test` on the embedded defaults)."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from celery import Celery
from django.db import transaction

from notifications import emails
from notifications.models import EmailMessage

from . import processes

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# A Redis database no other test uses (13: the shared rate-limit test), and a queue of this run's own.
BROKER = "redis://127.0.0.1:6379/14"


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def queue_name():
    if not _redis_answers():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    name = f"test-emails-{uuid.uuid4().hex}"
    yield name
    import redis

    client = redis.Redis.from_url(BROKER)
    for key in client.scan_iter(match=f"*{name}*"):  # the queue and kombu's bindings of it
        client.delete(key)
    client.close()


def test_a_real_worker_on_redis_sends_one_queued_email(program, member, queue_name, tmp_path, monkeypatch):
    # Queued in a transaction; here (eager test settings) nothing is sent after commit: the
    # task goes through the broker to the worker below.
    monkeypatch.setattr(emails, "_send_later", lambda ids: None)
    with transaction.atomic():
        message_id = emails.message_queue(program_id=program.id, member_id=member.id, kind="welcome", source="enrolled")
    assert EmailMessage.objects.get(pk=message_id).status == "queued"

    outbox = tmp_path / "emails"
    env = processes.base_env(
        tmp_path,
        CELERY_BROKER_URL=BROKER,
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(outbox),
    )
    log = tmp_path / "worker.log"
    argv = [
        *("-m", "celery", "-A", "config.celery_app", "worker", "--queues", queue_name),
        *("--pool", "solo", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    worker = processes.start([processes.sys.executable, *argv], env, log)
    try:
        # Redis drops a message sent to a queue nobody has bound yet: send once the worker listens.
        processes.wait_for("the worker starts", lambda: " ready." in processes.tail(log), procs=[worker], logs=[log])
        monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # Celery would prefer it to `broker`
        # set_as_current=False: otherwise shared tasks of later tests would go to this app (not eager)
        sender = Celery("test-sender", broker=BROKER, set_as_current=False)
        sender.send_task("notifications.send_email", args=[message_id], queue=queue_name)
        sender.close()

        def sent() -> bool:
            return EmailMessage.objects.filter(pk=message_id, status="sent").exists()

        processes.wait_for("the worker sends the email", sent, procs=[worker], logs=[log])
    finally:
        processes.stop(worker)

    row = EmailMessage.objects.get(pk=message_id)
    assert (row.to_email, row.attempts) == (member.email, 1)
    files = list(Path(outbox).iterdir())
    assert len(files) == 1
    content = files[0].read_text()
    assert f"X-Loyalty-Message: {message_id}" in content
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in content
    assert "notifications.send_email" in processes.tail(log, 100_000)
