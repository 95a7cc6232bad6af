import datetime as dt
import json
import socket

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from loyalty.services import points_earn
from notifications import services
from notifications.models import DeliveryAttempt, EventType, WebhookDelivery
from notifications.tasks import deliver_webhook_task

from .factories import WebhookEndpointFactory

MINUTE = dt.timedelta(minutes=1)


def earn(member, points=100):
    return points_earn(program=member.program, member_id=member.pk, points=points)


def only_delivery():
    return WebhookDelivery.objects.get()


def test_a_delivery_is_signed_so_that_the_standard_webhooks_verifier_accepts_it(
    endpoint, member, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = earn(member, 120)

    [request] = receiver.requests
    payload = Webhook(endpoint.secret).verify(request["body"], request["headers"])
    assert payload["type"] == "points.earned"
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["data"]["entry"]["id"] == result.entries[0].id
    assert payload["data"]["entry"]["points"] == 120
    assert payload["data"]["external_id"] == member.external_id
    assert payload["data"]["balance"]["available"] == 120
    delivery = only_delivery()
    assert request["headers"]["webhook-id"] == delivery.message_id
    assert delivery.message_id.startswith("msg_")
    assert request["headers"]["webhook-signature"].startswith("v1,")
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 200
    assert delivery.delivered_at
    assert DeliveryAttempt.objects.get().status_code == 200


def test_a_forged_or_tampered_delivery_fails_verification(
    endpoint, member, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    [request] = receiver.requests
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(request["body"].replace(b"100", b"999"), request["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(services.new_secret()).verify(request["body"], request["headers"])


def test_a_failing_receiver_gets_retries_under_the_same_webhook_id(
    endpoint, member, receiver, django_capture_on_commit_callbacks
):
    receiver.script = [500]
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    delivery = only_delivery()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.attempts == 1
    assert delivery.last_status_code == 500
    wait = delivery.next_attempt_at - DeliveryAttempt.objects.get().at
    assert dt.timedelta(seconds=48) <= wait <= dt.timedelta(seconds=72)  # 30 s * 2**1, +-20%

    # Not due yet: nothing is sent again.
    assert services.outbox_deliver().attempted == 0
    call_command("deliver_outbox", now=(timezone.now() + 2 * MINUTE).isoformat())

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 2
    assert delivery.last_status_code == 200
    assert delivery.last_error == ""
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == delivery.message_id
    assert first["body"] == second["body"]
    for request in receiver.requests:
        Webhook(endpoint.secret).verify(request["body"], request["headers"])
    assert list(DeliveryAttempt.objects.order_by("number").values_list("number", "status_code")) == [
        (1, 500),
        (2, 200),
    ]


def test_retries_stop_after_eight_attempts_and_the_delivery_fails(
    endpoint, member, receiver, django_capture_on_commit_callbacks
):
    receiver.script = [503] * 20
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    moment = timezone.now()
    for _ in range(10):
        moment += dt.timedelta(hours=6)
        services.outbox_deliver(now=moment)
    delivery = only_delivery()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == services.MAX_ATTEMPTS == 8
    assert delivery.next_attempt_at is None
    assert delivery.last_status_code == 503
    assert len(receiver.requests) == 8
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
    assert DeliveryAttempt.objects.count() == 8


def test_the_backoff_doubles_from_one_minute_with_jitter():
    for attempts in range(1, 8):
        wait = services.backoff(attempts).total_seconds()
        assert 0.8 * 30 * 2**attempts <= wait <= 1.2 * 30 * 2**attempts


def test_the_task_asks_celery_for_a_retry_at_the_rows_next_attempt_when_a_broker_runs(
    endpoint, program, receiver, monkeypatch
):
    receiver.script = [500]
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_key="x",
        event_type="points.earned",
        body="{}",
        next_attempt_at=timezone.now(),
        created_at=timezone.now(),
    )
    asked = {}

    class Retry(Exception):
        pass

    def retry(**kwargs):
        asked.update(kwargs)
        return Retry()

    monkeypatch.setattr(deliver_webhook_task, "retry", retry)
    deliver_webhook_task.push_request(is_eager=False)
    try:
        with pytest.raises(Retry):
            deliver_webhook_task.run(delivery.pk)
    finally:
        deliver_webhook_task.pop_request()
    delivery.refresh_from_db()
    expected = (delivery.next_attempt_at - DeliveryAttempt.objects.get().at).total_seconds()
    assert asked["countdown"] == pytest.approx(expected, abs=0.01)
    assert asked["max_retries"] is None


def test_a_connection_error_is_recorded_and_retried(program, allow_private, member, django_capture_on_commit_callbacks):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    WebhookEndpointFactory(program=program, url=f"http://127.0.0.1:{port}/hooks")
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    delivery = only_delivery()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.last_status_code is None
    assert "ConnectionError" in delivery.last_error
    assert "ConnectionError" in DeliveryAttempt.objects.get().error


def test_a_redirect_is_not_followed(endpoint, member, receiver, django_capture_on_commit_callbacks):
    receiver.script = [302]
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    delivery = only_delivery()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.last_status_code == 302
    assert delivery.last_error == "HTTP 302"
    assert len(receiver.requests) == 1


def test_delivery_refuses_a_loopback_address_when_private_urls_are_not_allowed(
    program, receiver, member, settings, django_capture_on_commit_callbacks
):
    # Saved while allowed (or through DNS that changed since): the delivery checks again.
    https_url = receiver.url.replace("http://", "https://")
    WebhookEndpointFactory(program=program, url=https_url)
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    delivery = only_delivery()
    assert "InvalidIPAddress" in delivery.last_error
    assert receiver.requests == []


def test_delivery_refuses_plain_http_when_private_urls_are_not_allowed(
    endpoint, receiver, member, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    assert only_delivery().last_error == "The endpoint URL is not https."
    assert receiver.requests == []


def test_deliver_outbox_is_idempotent(endpoint, member, receiver, django_capture_on_commit_callbacks):
    receiver.script = [500]
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    later = timezone.now() + dt.timedelta(hours=1)
    assert services.outbox_deliver(now=later).succeeded == 1
    assert services.outbox_deliver(now=later).attempted == 0
    call_command("deliver_outbox", now=later.isoformat())
    assert len(receiver.requests) == 2
    assert only_delivery().attempts == 2


def test_a_delivery_a_worker_claimed_and_lost_is_sent_again_once_its_lease_ends(endpoint, receiver):
    now = timezone.now()
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_key="k", event_type="points.earned", body="{}", next_attempt_at=now, created_at=now
    )
    assert services._claim(now=now, delivery_id=None, due=now) is not None  # then the worker died
    assert services.outbox_deliver(now=now + MINUTE).attempted == 0  # still leased
    assert services.outbox_deliver(now=now + services.LEASE + MINUTE).succeeded == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert [r["headers"]["webhook-id"] for r in receiver.requests] == [delivery.message_id]


def test_retry_now_gives_a_failed_delivery_one_more_attempt_with_the_same_id(
    endpoint, member, receiver, django_capture_on_commit_callbacks
):
    receiver.script = [500] * 8
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    moment = timezone.now()
    for _ in range(8):
        moment += dt.timedelta(hours=6)
        services.outbox_deliver(now=moment)
    delivery = only_delivery()
    assert delivery.status == WebhookDelivery.Status.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        assert services.deliveries_retry(delivery_ids=[delivery.pk]) == 1
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 9
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {delivery.message_id}


def test_the_test_event_reaches_an_endpoint_subscribed_to_nothing(
    program, receiver, django_capture_on_commit_callbacks
):
    endpoint = WebhookEndpointFactory(program=program, url=receiver.url, events=[])
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.endpoint_send_test(endpoint=endpoint)
    [request] = receiver.requests
    payload = Webhook(endpoint.secret).verify(request["body"], request["headers"])
    assert payload["type"] == "webhook.test"
    assert payload["data"]["endpoint_id"] == endpoint.pk
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED


# --------------------------------------------------------------------------------------------
# URL rules


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hooks",  # plain http
        "ftp://93.184.215.14/hooks",
        "https://127.0.0.1/hooks",
        "https://127.0.0.1:8443/hooks",
        "https://10.1.2.3/hooks",
        "https://172.16.0.5/hooks",
        "https://192.168.1.10/hooks",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "https://100.64.0.1/hooks",  # carrier-grade NAT
        "https://0.0.0.0/hooks",
        "https://[::1]/hooks",
        "https://[fe80::1]/hooks",
        "https://[::ffff:10.0.0.1]/hooks",
        "https://224.0.0.1/hooks",
        "https://localhost/hooks",  # a name that resolves to loopback
        "https:///hooks",
    ],
)
def test_endpoint_urls_that_are_not_https_or_not_public_are_refused(db, settings, url):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ValidationError):
        services.endpoint_url_validate(url)


def test_a_public_address_is_accepted(db, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    services.endpoint_url_validate("https://93.184.215.14/hooks")


def fake_dns(monkeypatch, *addresses):
    def getaddrinfo(host, port, *args, **kwargs):
        if not addresses:
            raise socket.gaierror("no such host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_host_name_is_accepted_when_every_address_is_public(settings, monkeypatch):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    fake_dns(monkeypatch, "93.184.215.14", "93.184.215.15")
    services.endpoint_url_validate("https://hooks.example.com/loyalty")


def test_a_host_name_with_one_private_address_is_refused(settings, monkeypatch):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    fake_dns(monkeypatch, "93.184.215.14", "10.0.0.7")
    with pytest.raises(ValidationError, match=r"10\.0\.0\.7"):
        services.endpoint_url_validate("https://hooks.example.com/loyalty")


def test_a_host_name_that_does_not_resolve_is_refused(settings, monkeypatch):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    fake_dns(monkeypatch)
    with pytest.raises(ValidationError, match="could not be resolved"):
        services.endpoint_url_validate("https://nowhere.invalid/loyalty")


def test_the_development_setting_allows_http_and_loopback(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    services.endpoint_url_validate("http://127.0.0.1:9000/hooks")
    services.endpoint_url_validate("http://localhost/hooks")
    with pytest.raises(ValidationError):
        services.endpoint_url_validate("ftp://127.0.0.1/hooks")


def test_an_endpoint_gets_a_standard_webhooks_secret_and_known_events_only(program, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    endpoint = services.endpoint_create(
        program=program, url="https://93.184.215.14/hooks", events=["points.earned", "member.enrolled"]
    )
    assert endpoint.secret.startswith("whsec_")
    assert len(Webhook(endpoint.secret)._whsecret) == 32
    assert endpoint.events == [EventType.MEMBER_ENROLLED, EventType.POINTS_EARNED]
    with pytest.raises(ValidationError):
        services.endpoint_create(program=program, url="https://93.184.215.14/hooks", events=["points.stolen"])
    with pytest.raises(ValidationError):
        services.endpoint_create(program=program, url="https://10.0.0.1/hooks", events=["points.earned"])
    old = endpoint.secret
    assert services.endpoint_rotate_secret(endpoint=endpoint).secret != old


def test_the_body_is_the_same_bytes_on_every_attempt_and_small(
    endpoint, member, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    delivery = only_delivery()
    assert receiver.requests[0]["body"] == delivery.body.encode()
    assert json.loads(delivery.body)["timestamp"].endswith("Z")
    assert member.email not in delivery.body


def test_retry_now_leaves_pending_and_succeeded_deliveries_alone(
    endpoint, receiver, django_capture_on_commit_callbacks
):
    now = timezone.now()
    later = now + dt.timedelta(minutes=5)
    pending = WebhookDelivery.objects.create(
        endpoint=endpoint, event_key="a", event_type="points.earned", body="{}", next_attempt_at=later, created_at=now
    )
    done = WebhookDelivery.objects.create(
        endpoint=endpoint, event_key="b", event_type="points.earned", body="{}", status="succeeded", created_at=now
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.deliveries_retry(delivery_ids=[pending.pk, done.pk]) == 0
    pending.refresh_from_db()
    assert pending.next_attempt_at == later
    assert receiver.requests == []


def test_the_beat_entry_runs_deliver_outbox_every_minute_and_the_expiry_scan_starts_at_the_ledger_end(
    endpoint, member, receiver, django_capture_on_commit_callbacks
):
    import importlib

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    from notifications.models import ExpiryScanCursor
    from notifications.tasks import deliver_outbox_task

    with django_capture_on_commit_callbacks(execute=True):
        earn(member)
    migration = importlib.import_module("notifications.migrations.0002_expiry_cursor_and_beat")
    migration.create(apps, None)
    task = PeriodicTask.objects.get(task="notifications.deliver_outbox")
    assert (task.interval.every, task.interval.period) == (1, "minutes")
    assert ExpiryScanCursor.objects.get(pk=1).last_entry_id == member.entries.get().id
    assert deliver_outbox_task() == {
        "attempted": 0,
        "succeeded": 0,
        "failed": 0,
        "emails_attempted": 0,
        "emails_sent": 0,
        "emails_suppressed": 0,
        "emails_failed": 0,
    }
