"""Writes of the notifications app: webhook endpoints, the outbox and its delivery.

Delivery model (docs/webhooks.md):
- an event becomes one `WebhookDelivery` row per subscribed endpoint (`deliveries_record`),
  written in a short transaction; its delivery task is queued after commit;
- an attempt first *claims* the row (`SELECT ... FOR UPDATE SKIP LOCKED`, then counts the
  attempt and pushes `next_attempt_at` one lease ahead, committed), then POSTs outside any
  transaction, then records the outcome. Two workers never send one row at once: the second
  skips the locked row, or finds it leased. A worker that dies mid-send leaves the row due
  again when the lease ends, and `deliver_outbox` sends it again under the same webhook-id;
- 2xx is success; any other status, a timeout, a refused address or a connection error is
  retried after 30 s * 2**attempts (jitter +-20%), 8 attempts in all, then the row fails.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone
from requests_hardened import Config, Manager
from standardwebhooks import Webhook

from loyalty.models import Program

from .models import TEST_EVENT, DeliveryAttempt, EventType, WebhookDelivery, WebhookEndpoint, new_secret

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_JITTER = 0.2
# Longer than a whole attempt (connect + read timeouts): a leased row is not sent twice.
LEASE = dt.timedelta(minutes=2)
# A Celery retry may arrive a little before the row's `next_attempt_at` (clocks, jitter).
EARLY = dt.timedelta(seconds=30)
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 10
USER_AGENT = "loyalty-backoffice-webhooks/1"
KEEP_RESPONSE = 500


# --------------------------------------------------------------------------------------------
# URL rules


def _allow_private() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE_URLS", False))


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def endpoint_url_validate(url: str) -> None:
    """Refuse a URL a webhook may not be sent to: not https, no host, or a host that resolves
    (any of its addresses) to a private, loopback, link-local, multicast or reserved address.
    `WEBHOOKS_ALLOW_PRIVATE_URLS` (development, tests) allows http and any address. Resolves
    the host name (DNS); delivery checks the address again (requests-hardened), since DNS can
    change between now and then."""
    parts = urlsplit(url or "")
    allow_private = _allow_private()
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise ValidationError("The URL must start with https://.", code="scheme")
    host = parts.hostname
    if not host:
        raise ValidationError("The URL has no host name.", code="host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValidationError("The URL's port is not valid.", code="port") from exc
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValidationError(f"The host {host} could not be resolved.", code="resolve") from exc
    for *_rest, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
        if not _is_public(ip):
            raise ValidationError(
                f"The host {host} resolves to {ip}, a private, loopback or reserved address: "
                "webhooks go to public addresses only.",
                code="private_address",
            )


def _check_events(events: Sequence[str]) -> list[str]:
    unknown = sorted(set(events) - set(EventType.values))
    if unknown:
        raise ValidationError(f"Unknown events: {', '.join(unknown)}.", code="events")
    return [e for e in EventType.values if e in set(events)]


# --------------------------------------------------------------------------------------------
# Endpoints


@transaction.atomic  # not durable: the admin's change form runs it inside its own transaction
def endpoint_create(
    *, program: Program, url: str, events: Sequence[str], description: str = "", is_active: bool = True
) -> WebhookEndpoint:
    """Register a URL for some events of a program, with a fresh signing secret. Raises
    `ValidationError` on a refused URL or an unknown event."""
    endpoint_url_validate(url)
    endpoint = WebhookEndpoint(
        program=program, url=url, events=_check_events(events), description=description, is_active=is_active
    )
    endpoint.full_clean()
    endpoint.save()
    return endpoint


@transaction.atomic  # not durable: the admin's change form runs it inside its own transaction
def endpoint_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    """Change url, events, description or is_active (not the program, not the secret)."""
    allowed = {"url", "events", "description", "is_active"}
    if set(changes) - allowed:
        raise ValueError(f"Cannot change {sorted(set(changes) - allowed)}.")
    if "url" in changes:
        endpoint_url_validate(changes["url"])
    if "events" in changes:
        changes["events"] = _check_events(changes["events"])
    for name, value in changes.items():
        setattr(endpoint, name, value)
    endpoint.full_clean()
    endpoint.save(update_fields=[*changes])
    return endpoint


@transaction.atomic  # not durable: the admin's change form runs it inside its own transaction
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new signing secret; deliveries sent from now on (retries included) use it."""
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret"])
    return endpoint


# --------------------------------------------------------------------------------------------
# The outbox


@dataclass(frozen=True)
class Event:
    """One event, before it is fanned out to the endpoints that want it."""

    type: str
    key: str  # what happened, unique per event (e.g. "entry:42"): one delivery per endpoint
    at: dt.datetime
    data: dict[str, Any]


def event_body(event: Event) -> str:
    """The JSON body of a delivery: {"type", "timestamp", "data"}, times in UTC."""
    return json.dumps(
        {"type": event.type, "timestamp": event.at.astimezone(dt.UTC), "data": event.data},
        cls=DjangoJSONEncoder,
        separators=(",", ":"),
    )


_INSERT_SQL = f"""
INSERT INTO {WebhookDelivery._meta.db_table}
    (endpoint_id, message_id, event_key, event_type, body, status, attempts, last_error, next_attempt_at, created_at)
SELECT u.endpoint_id, u.message_id, u.event_key, u.event_type, u.body, 'pending', 0, '', %(now)s, %(now)s
FROM unnest(%(endpoint)s::bigint[], %(message)s::text[], %(key)s::text[], %(type)s::text[], %(body)s::text[])
     AS u(endpoint_id, message_id, event_key, event_type, body)
ON CONFLICT (endpoint_id, event_key) DO NOTHING
RETURNING id
"""


def deliveries_record(
    *, endpoints: Iterable[WebhookEndpoint], events: Iterable[Event], now: dt.datetime | None = None
) -> list[int]:
    """Write one delivery per (endpoint subscribed to the event's type, event) and queue each
    after commit. An event already recorded for an endpoint (same key) is skipped. One INSERT, any size. Returns the
    new delivery ids."""
    now = now or timezone.now()
    rows: dict[str, list[Any]] = {"endpoint": [], "message": [], "key": [], "type": [], "body": []}
    endpoints = list(endpoints)
    for event in events:
        body = None
        for endpoint in endpoints:
            if event.type not in endpoint.events:
                continue
            body = body or event_body(event)
            rows["endpoint"].append(endpoint.pk)
            rows["message"].append(f"msg_{uuid.uuid4().hex}")
            rows["key"].append(event.key[:100])
            rows["type"].append(event.type)
            rows["body"].append(body)
    if not rows["endpoint"]:
        return []
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(_INSERT_SQL, {"now": now, **rows})
        ids = [r[0] for r in cur.fetchall()]
        _queue(ids)
    return ids


def _queue(ids: Iterable[int]) -> None:
    from .tasks import deliver_webhook_task  # tasks import this module

    for delivery_id in ids:
        deliver_webhook_task.delay_on_commit(delivery_id)


@transaction.atomic(durable=True)
def endpoint_send_test(*, endpoint: WebhookEndpoint, now: dt.datetime | None = None) -> WebhookDelivery:
    """A `webhook.test` delivery to one endpoint (the admin's "Send test event"), queued after
    commit like any other; sent even if the endpoint is subscribed to nothing."""
    now = now or timezone.now()
    event = Event(
        type=TEST_EVENT,
        key=f"test:{uuid.uuid4().hex}",
        at=now,
        data={"endpoint_id": endpoint.pk, "program": endpoint.program.slug, "message": "A test event."},
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_key=event.key,
        event_type=event.type,
        body=event_body(event),
        next_attempt_at=now,
        created_at=now,
    )
    _queue([delivery.pk])
    return delivery


@transaction.atomic(durable=True)
def deliveries_retry(*, delivery_ids: Sequence[int], now: dt.datetime | None = None) -> int:
    """Staff's "retry now": failed deliveries become due at once and are queued for one more
    attempt (failed again if it fails), same webhook-id and body. Pending ones are left alone:
    one of them may be in flight right now (leased), and its schedule already retries it.
    Returns how many were queued."""
    now = now or timezone.now()
    ids = list(
        WebhookDelivery.objects.filter(pk__in=delivery_ids, status=WebhookDelivery.Status.FAILED)
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)
    )
    WebhookDelivery.objects.filter(pk__in=ids).update(status=WebhookDelivery.Status.PENDING, next_attempt_at=now)
    _queue(ids)
    return len(ids)


# --------------------------------------------------------------------------------------------
# Delivery


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: int
    status: str
    status_code: int | None
    error: str
    retry_in: dt.timedelta | None  # None: no further attempt is scheduled


def backoff(attempts: int) -> dt.timedelta:
    """The wait after `attempts` failed tries: 30 s * 2**attempts, +-20% jitter (so that many
    deliveries failing together do not come back together)."""
    base = BACKOFF_BASE * (2**attempts)
    return base * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)


_CLAIM_SQL = f"""
UPDATE {WebhookDelivery._meta.db_table} d
SET attempts = d.attempts + 1, next_attempt_at = %(lease)s
FROM (
    SELECT id FROM {WebhookDelivery._meta.db_table}
    WHERE status = 'pending' AND next_attempt_at <= %(due)s {{one}}
    ORDER BY next_attempt_at LIMIT 1
    FOR UPDATE SKIP LOCKED
) picked
WHERE d.id = picked.id
RETURNING d.id
"""


def _claim(*, now: dt.datetime, delivery_id: int | None, due: dt.datetime) -> WebhookDelivery | None:
    """Take one due pending delivery (this one, or the most overdue), skipping rows another
    worker holds; count the attempt and lease the row. 1 UPDATE + 1 SELECT, committed."""
    sql = _CLAIM_SQL.format(one="AND id = %(id)s" if delivery_id is not None else "")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, {"lease": now + LEASE, "due": due, "id": delivery_id})
        row = cur.fetchone()
    if row is None:
        return None
    return WebhookDelivery.objects.select_related("endpoint").get(pk=row[0])


def _session() -> Manager:
    allow = _allow_private()
    return Manager(
        Config(
            ip_filter_enable=not allow,
            ip_filter_allow_loopback_ips=False,
            never_redirect=True,
            default_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            user_agent_override=USER_AGENT,
        )
    )


def signed_headers(*, secret: str, message_id: str, body: str, at: dt.datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (the timestamp is the attempt's)."""
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def _post(delivery: WebhookDelivery) -> tuple[int | None, str, str]:
    """POST the delivery once. Returns (status code or None, error, start of the answer)."""
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        return None, "The endpoint is disabled.", ""
    if urlsplit(endpoint.url).scheme != "https" and not _allow_private():
        return None, "The endpoint URL is not https.", ""
    headers = signed_headers(
        secret=endpoint.secret, message_id=delivery.message_id, body=delivery.body, at=timezone.now()
    )
    try:
        with _session().get_session() as session:
            response = session.post(endpoint.url, data=delivery.body.encode(), headers=headers, stream=True)
            try:
                answer = response.raw.read(KEEP_RESPONSE, decode_content=True) or b""
            except Exception:  # the answer is informational only
                answer = b""
            finally:
                response.close()
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500], ""
    return response.status_code, "", answer.decode("utf-8", "replace")[:KEEP_RESPONSE]


def _record(
    *, delivery: WebhookDelivery, now: dt.datetime, status_code: int | None, error: str, answer: str, duration_ms: int
) -> AttemptResult:
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        DeliveryAttempt.objects.create(
            delivery=locked,
            number=locked.attempts,
            at=now,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            response_body=answer,
        )
        ok = status_code is not None and 200 <= status_code < 300
        if not ok and not error:
            error = f"HTTP {status_code}"
        retry_in = None
        if ok:
            status, next_at, delivered_at = WebhookDelivery.Status.SUCCEEDED, None, now
        elif locked.attempts >= MAX_ATTEMPTS:
            status, next_at, delivered_at = WebhookDelivery.Status.FAILED, None, None
        else:
            retry_in = backoff(locked.attempts)
            status, next_at, delivered_at = WebhookDelivery.Status.PENDING, now + retry_in, None
        WebhookDelivery.objects.filter(pk=locked.pk).update(
            status=status,
            last_status_code=status_code,
            last_error="" if ok else error[:500],
            next_attempt_at=next_at,
            delivered_at=delivered_at,
        )
    return AttemptResult(locked.pk, status, status_code, "" if ok else error, retry_in)


def _attempt(*, now: dt.datetime, delivery_id: int | None, due: dt.datetime) -> AttemptResult | None:
    delivery = _claim(now=now, delivery_id=delivery_id, due=due)
    if delivery is None:
        return None
    started = time.monotonic()
    status_code, error, answer = _post(delivery)
    duration_ms = int((time.monotonic() - started) * 1000)
    result = _record(
        delivery=delivery, now=now, status_code=status_code, error=error, answer=answer, duration_ms=duration_ms
    )
    if result.status != WebhookDelivery.Status.SUCCEEDED:
        logger.info("webhook %s to endpoint %s: %s", delivery.message_id, delivery.endpoint_id, result.error)
    return result


def delivery_attempt(*, delivery_id: int, now: dt.datetime | None = None) -> AttemptResult | None:
    """Try to send one delivery now, if it is pending and due (within `EARLY`) and no other
    worker holds it. None: nothing to do (sent already, not due, or taken by another worker).
    Must not run inside a transaction: the claim commits before the POST."""
    now = now or timezone.now()
    return _attempt(now=now, delivery_id=delivery_id, due=now + EARLY)


@dataclass
class OutboxResult:
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0


def outbox_deliver(*, now: dt.datetime | None = None, limit: int = 500) -> OutboxResult:
    """Send the pending deliveries due at `now`, most overdue first, one claim at a time, at
    most `limit`: the safety net behind the per-delivery tasks (a lost message, a worker that
    died). Safe to run on several workers at once (SKIP LOCKED + lease) and idempotent: a
    second run finds nothing due."""
    now = now or timezone.now()
    result = OutboxResult()
    for _ in range(limit):
        attempt = _attempt(now=now, delivery_id=None, due=now)
        if attempt is None:
            break
        result.attempted += 1
        if attempt.status == WebhookDelivery.Status.SUCCEEDED:
            result.succeeded += 1
        elif attempt.status == WebhookDelivery.Status.FAILED:
            result.failed += 1
    return result
