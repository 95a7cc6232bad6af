"""deliver_outbox on several workers at once: each due delivery is sent once (SKIP LOCKED)."""

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from notifications import services
from notifications.models import DeliveryAttempt, WebhookDelivery

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def due_deliveries(endpoint, n):
    now = timezone.now()
    return [
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_key=f"entry:{i}",
            event_type="points.earned",
            body=f'{{"n":{i}}}',
            next_attempt_at=now,
            created_at=now,
        )
        for i in range(n)
    ]


def in_thread(func, results):
    def run():
        try:
            results.append(func())
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_two_concurrent_runs_send_each_delivery_once(endpoint, receiver):
    deliveries = due_deliveries(endpoint, 6)
    receiver.delay = 0.2  # both runs are busy at the same time
    results = []
    threads = [in_thread(lambda: services.outbox_deliver(), results) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sum(r.attempted for r in results) == 6
    assert all(r.attempted > 0 for r in results)  # the work was shared
    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert sorted(ids) == sorted(d.message_id for d in deliveries)  # each once
    assert DeliveryAttempt.objects.count() == 6
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert services.outbox_deliver().attempted == 0


def test_a_delivery_locked_by_another_worker_is_skipped_not_waited_for(endpoint, receiver):
    held, free = due_deliveries(endpoint, 2)
    locked, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            WebhookDelivery.objects.select_for_update().get(pk=held.pk)
            locked.set()
            release.wait(timeout=30)
        return None

    results = []
    holder = in_thread(hold, results)
    holder.start()
    assert locked.wait(timeout=10)
    try:
        result = services.outbox_deliver()
    finally:
        release.set()
        holder.join(timeout=30)

    assert result.attempted == 1
    assert [r["headers"]["webhook-id"] for r in receiver.requests] == [free.message_id]
    assert services.outbox_deliver().attempted == 1  # the lock is gone: now it is sent
    assert [r["headers"]["webhook-id"] for r in receiver.requests] == [free.message_id, held.message_id]


def test_the_task_and_a_periodic_run_racing_for_one_delivery_send_it_once(endpoint, receiver):
    [delivery] = due_deliveries(endpoint, 1)
    receiver.delay = 0.3
    results = []
    threads = [
        in_thread(lambda: services.delivery_attempt(delivery_id=delivery.pk), results),
        in_thread(lambda: services.outbox_deliver(), results),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert delivery.status == "succeeded"
