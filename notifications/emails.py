"""Writes of member emails (docs/emails.md): queueing into the outbox, sending, statuses.

- **Queueing** (`message_queue`) runs inside the transaction of the event that causes the
  message: one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` that writes the row only for a
  member with an address (and, for a marketing kind, with consent), so a rolled-back event
  leaves no message, a repeated event (a retry, a re-run, a racing worker) leaves one, and a
  broker that is down loses nothing. After commit the message's send task is queued; if that
  fails, `deliver_outbox` sends the message when it is due.
- **Sending** (`message_send`) first claims the row (`FOR UPDATE SKIP LOCKED`, counts the
  attempt and leases the row for `LEASE`, committed), then renders and hands the message to
  the email backend (anymail) outside any transaction, then records the outcome. Two workers
  never send one row at once. A worker killed between sending and recording leaves the row
  due again when its lease ends, so the message is sent at least once; every send carries
  the outbox id (`X-Loyalty-Message` header and anymail metadata) and the ESP's message id of
  the last send is stored, so a duplicate is traceable.
- **Checks at send time**: the kind is still on, the address is not suppressed (hard bounce,
  complaint), and for marketing kinds the member still consents and has not opted out;
  otherwise the message becomes `suppressed` and nothing is sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import formataddr
from typing import Any

from django.conf import settings
from django.core import mail, signing
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from loyalty.models import Member, Program
from loyalty.presence import TtlCache

from . import email_context, email_kinds, email_render
from .models import EmailMessage, EmailOptOut, EmailSettings, EmailSuppression, EmailTemplate
from .services import backoff

logger = logging.getLogger(__name__)

Status = EmailMessage.Status

MAX_ATTEMPTS = 8
# Longer than one send through the ESP's API (anymail's timeouts): a leased row is not sent twice.
LEASE = dt.timedelta(minutes=5)
# A task may arrive a little before the row's `next_attempt_at` (clocks, jitter).
EARLY = dt.timedelta(seconds=30)
UNSUBSCRIBE_SALT = "notifications.unsubscribe"

_MESSAGES = EmailMessage._meta.db_table
_MEMBERS = Member._meta.db_table

# --------------------------------------------------------------------------------------------
# Settings of a program, remembered a few seconds per process (every event asks them)

_settings_cache: TtlCache[EmailSettings] = TtlCache(ttl=5.0)


def settings_forget(*args: object, **kwargs: object) -> None:
    _settings_cache.clear()


def program_settings(program_id: int) -> EmailSettings:
    """The program's email settings (created with the defaults on first use)."""

    def load() -> EmailSettings:
        found = EmailSettings.objects.filter(program_id=program_id).first()
        if found is None:
            # Not saved here: the caller may be inside an event's transaction.
            found = EmailSettings(program_id=program_id)
        return found

    return _settings_cache.get(program_id, load)


def program_sends(program_id: int, kind: str) -> bool:
    return program_settings(program_id).sends(kind)


# --------------------------------------------------------------------------------------------
# Queueing


_QUEUE_MEMBER_SQL = f"""
INSERT INTO {_MESSAGES} (program_id, member_id, kind, source, data, status, attempts, next_attempt_at,
                         to_email, subject, language, esp_message_id, last_error, created_at)
SELECT m.program_id, m.id, %(kind)s, %(source)s, %(data)s::jsonb, 'queued', 0, %(now)s, '', '', '', '', '', %(now)s
FROM {_MEMBERS} m
WHERE m.id = %(member)s AND m.email <> '' {{consent}}
ON CONFLICT (program_id, member_id, kind, source) WHERE member_id IS NOT NULL DO NOTHING
RETURNING id
"""

_QUEUE_STAFF_SQL = f"""
INSERT INTO {_MESSAGES} (program_id, member_id, kind, source, data, status, attempts, next_attempt_at,
                         to_email, subject, language, esp_message_id, last_error, created_at)
VALUES (%(program)s, NULL, %(kind)s, %(source)s, %(data)s::jsonb, 'queued', 0, %(now)s, %(to)s, '', '', '', '', %(now)s)
ON CONFLICT (program_id, kind, source) WHERE member_id IS NULL DO NOTHING
RETURNING id
"""


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"))


def message_queue(
    *,
    program_id: int,
    member_id: int | None,
    kind: str,
    source: str,
    data: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
    transactional: bool = False,
) -> int | None:
    """Queue one message of `kind` for a member (or, for a staff kind, the program's admin
    address) in the caller's transaction, once per (member, kind, source). Nothing is written
    when the program does not send the kind, the member has no address, or (marketing kinds,
    unless `transactional`) has not consented. Returns the new row's id, or None (not written,
    or written before). 1 statement; 0 when the kind is off (settings cached per process)."""
    info = email_kinds.KINDS[kind]
    settings_row = program_settings(program_id)
    if not settings_row.sends(kind):
        return None
    now = now or timezone.now()
    params = {"kind": kind, "source": source[:120], "data": _json(data or {}), "now": now}
    with connection.cursor() as cursor:
        if info.to == "admin":
            if not settings_row.admin_email:
                return None
            cursor.execute(_QUEUE_STAFF_SQL, {**params, "program": program_id, "to": settings_row.admin_email})
        else:
            if member_id is None:
                return None
            consent = "AND m.email_consent" if info.marketing and not transactional else ""
            cursor.execute(_QUEUE_MEMBER_SQL.format(consent=consent), {**params, "member": member_id})
        row = cursor.fetchone()
    if row is None:
        return None
    message_id = row[0]
    transaction.on_commit(lambda: _send_later([message_id]), robust=True)
    return message_id


def _send_later(message_ids: Iterable[int]) -> None:
    """After commit: hand the messages to a worker. With a broker, the ids join this process's
    send buffer (`_SendBuffer`): a background thread publishes them as one `send_emails_task`
    per batch within `BUFFER_SECONDS`, so a request pays for an append, not for a broker
    publish (~0.5 ms of CPU). Eager (tests, no broker): one task per message, at once. A
    lost id (the process dies, the broker is down) is caught by `deliver_outbox`: the row is due."""
    from .tasks import send_email_task

    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        for message_id in message_ids:
            try:
                send_email_task.delay(message_id)
            except Exception:  # the row stays due, deliver_outbox sends it
                logger.warning("email %s: the send task failed; deliver_outbox will send it", message_id)
        return
    _buffer.add(message_ids)


# Seconds a queued message waits in a process's send buffer at most before its task is published.
BUFFER_SECONDS = 0.5


class _SendBuffer:
    """Message ids waiting to be published, per process, and the daemon thread publishing them
    (started on first use, so after a fork: each gunicorn worker has its own)."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, message_ids: Iterable[int]) -> None:
        with self._lock:
            self._ids.extend(message_ids)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="email-send-buffer", daemon=True)
                self._thread.start()
        self._wake.set()

    def flush(self) -> None:
        with self._lock:
            ids, self._ids = self._ids, []
        if ids:
            _send_batches_later(ids)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(BUFFER_SECONDS)  # let the requests of the next moment join the batch
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # never let the thread die; the rows stay due for deliver_outbox
                logger.exception("email send buffer: publishing failed; deliver_outbox will send the messages")


_buffer = _SendBuffer()


# Messages per send task queued by `messages_queued`: a schedule writes up to a million rows,
# and one broker message per row would cost more than writing them.
SEND_BATCH = 500


def _send_batches_later(message_ids: Sequence[int]) -> None:
    """After commit: one send task per `SEND_BATCH` messages (a lost task: `deliver_outbox`)."""
    from .tasks import send_emails_task

    for start in range(0, len(message_ids), SEND_BATCH):
        batch = list(message_ids[start : start + SEND_BATCH])
        try:
            send_emails_task.delay(batch)
        except Exception:  # the broker is down: the rows stay due, deliver_outbox sends them
            logger.warning("emails %s..: the send task could not be queued; deliver_outbox will send them", batch[0])


def messages_queued(message_ids: Sequence[int]) -> None:
    """Set-based writers (the schedules) call this in their transaction for the rows they
    inserted, so that the rows are sent after commit, `SEND_BATCH` per task."""
    ids = list(message_ids)
    if ids:
        transaction.on_commit(lambda: _send_batches_later(ids), robust=True)


def login_link_queue(*, member: Member, url: str, valid_minutes: int, now: dt.datetime | None = None) -> int | None:
    """Queue the customer portal's one-time login link for `member` (the login_link kind, which
    a program cannot switch off). Joins the caller's transaction (the portal writes its token
    in the same one), else runs in its own. The source is derived from the link, so each link
    request is one message and a retry of the same request is not a second one. Returns the
    message id, or None (no address, or queued before). 1 statement."""
    if valid_minutes <= 0:
        raise ValueError("valid_minutes must be positive")
    source = "login:" + hashlib.sha256(url.encode()).hexdigest()[:40]
    with transaction.atomic():
        return message_queue(
            program_id=member.program_id,
            member_id=member.pk,
            kind=email_kinds.EmailKind.LOGIN_LINK,
            source=source,
            data={"login_url": url, "valid_minutes": valid_minutes},
            now=now,
        )


def deletion_decision_queue(
    *,
    program: Program,
    member: Member,
    request_id: int,
    requested_at: dt.datetime,
    confirm: bool,
    note: str,
    now: dt.datetime,
) -> int | None:
    """Queue the answer to a member's request to delete their data, in the decision's
    transaction (always on; once per request). A refusal carries staff's reason and is rendered
    when sent, like any message. A confirmation is queued just before the member is anonymised,
    so it is rendered now, with the person's name and data of this moment, and its address is
    captured in the row (`to_email`): `member_messages_erase` leaves it alone, and the send
    blanks the address and the rendering once it is sent or has failed for good
    (`email_kinds.CAPTURED`). Returns the message id, or None (no address). 1-2 statements plus
    the rendering's reads for a confirmation."""
    kind = email_kinds.EmailKind.DELETION_CONFIRMED if confirm else email_kinds.EmailKind.DELETION_DECLINED
    data: dict[str, Any] = {"requested_on": timezone.localdate(requested_at).isoformat()}
    if confirm:
        data["erased_on"] = timezone.localdate(now).isoformat()
    else:
        data["reason"] = note
    message_id = message_queue(
        program_id=program.pk, member_id=member.pk, kind=kind, source=f"deletion:{request_id}", data=data, now=now
    )
    if message_id is None or not confirm:
        return message_id
    language = language_of(program, member)
    # No live links: the member's unsubscribe and preference links stop meaning anything.
    rendered = message_render(program=program, member=member, kind=kind, data=data, language=language, live_links=False)
    captured = {
        **data,
        "language": language,
        "rendered": {"subject": rendered.subject, "html": rendered.html, "text": rendered.text},
    }
    EmailMessage.objects.filter(pk=message_id).update(to_email=member.email, data=captured)
    return message_id


# --------------------------------------------------------------------------------------------
# Links


def unsubscribe_token(*, member_id: int, kind: str) -> str:
    return signing.dumps({"m": member_id, "k": kind}, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_read(token: str) -> tuple[int, str] | None:
    """(member id, kind) of a valid unsubscribe token, or None."""
    try:
        value = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("m"), int) or not isinstance(value.get("k"), str):
        return None
    return value["m"], value["k"]


def _absolute(path: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def links_for(*, program: Program, member_id: int | None, kind: str) -> dict[str, str]:
    portal = _absolute(f"/p/{program.slug}/")
    if member_id is None:
        return {"portal": portal, "unsubscribe": "", "preferences": ""}
    token = unsubscribe_token(member_id=member_id, kind=kind)
    return {
        "portal": portal,
        "unsubscribe": _absolute(reverse("notifications:unsubscribe", args=[token])),
        "preferences": _absolute(reverse("notifications:preferences", args=[token])),
    }


# --------------------------------------------------------------------------------------------
# Rendering


def template_parts(*, program_id: int, kind: str, language: str) -> email_render.Parts:
    """The merchant's template of `kind` in `language`, each empty field falling back to the
    shipped default. 1 query."""
    default = email_render.default_parts(kind, language)
    row = (
        EmailTemplate.objects.filter(program_id=program_id, kind=kind, language=language)
        .values_list("subject", "html_body", "text_body")
        .first()
    )
    if row is None:
        return default
    subject, html_body, text_body = row
    return email_render.Parts(
        subject=subject or default.subject,
        html_body=html_body or default.html_body,
        text_body=text_body or default.text_body,
    )


def language_of(program: Program, member: Member | None) -> str:
    language = (member.language if member is not None else "") or program.language
    return language if language in email_render.LANGUAGE_CODES else email_render.DEFAULT_LANGUAGE


def branding_of(program: Program, settings_row: EmailSettings, language: str) -> email_render.Branding:
    return email_render.Branding(
        name=program.name,
        color=program.brand_color,
        logo_url=program.logo_url,
        postal_address=settings_row.postal_address,
        language=language,
    )


def _tier_name(member: Member | None) -> str:
    if member is None:
        return ""
    from tiers.selectors import member_tier

    current = member_tier(member_id=member.pk)
    return current.tier.name if current is not None and current.tier_id else ""


def message_render(
    *,
    program: Program,
    member: Member | None,
    kind: str,
    data: dict[str, Any],
    parts: email_render.Parts | None = None,
    language: str | None = None,
    live_links: bool = True,
) -> email_render.Rendered:
    """Render a message as it would be sent now (also the admin's preview and test send).
    `live_links=False` (previews, tests): no working unsubscribe link of the member's, so a
    staff member clicking around a preview cannot unsubscribe a real member."""
    settings_row = program_settings(program.pk)
    language = language or language_of(program, member)
    parts = parts or template_parts(program_id=program.pk, kind=kind, language=language)
    member_id = member.pk if member is not None and live_links else None
    links = links_for(program=program, member_id=member_id, kind=kind)
    context = email_context.message_context(
        kind=kind,
        program=program,
        member=member,
        data=data,
        links=links,
        admin_email=settings_row.admin_email,
        tier_name=_tier_name(member),
    )
    return email_render.render(
        parts=parts,
        context=context,
        branding=branding_of(program, settings_row, language),
        unsubscribe_url=links["unsubscribe"] or links["portal"],
        preferences_url=links["preferences"] or links["portal"],
    )


def _sender(program: Program, settings_row: EmailSettings) -> str:
    address = settings_row.from_email or settings.DEFAULT_FROM_EMAIL
    return formataddr((settings_row.from_name or program.name, address))


def email_build(
    *,
    program: Program,
    member: Member | None,
    kind: str,
    to: str,
    rendered: email_render.Rendered,
    outbox_id: int | None,
) -> mail.EmailMultiAlternatives:
    """The email as handed to the backend, with the RFC 8058 one-click unsubscribe headers for
    a member's message."""
    settings_row = program_settings(program.pk)
    headers: dict[str, str] = {}
    if outbox_id is not None:
        headers["X-Loyalty-Message"] = str(outbox_id)
    if member is not None:
        token = unsubscribe_token(member_id=member.pk, kind=kind)
        one_click = _absolute(reverse("notifications:unsubscribe_one_click", args=[token]))
        headers["List-Unsubscribe"] = f"<{one_click}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message = mail.EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=_sender(program, settings_row),
        to=[to],
        reply_to=[settings_row.reply_to] if settings_row.reply_to else None,
        headers=headers,
    )
    message.attach_alternative(rendered.html, "text/html")
    # anymail: the outbox id travels with the message and comes back in tracking events.
    message.metadata = {"outbox_id": str(outbox_id)} if outbox_id is not None else {}  # type: ignore[attr-defined]
    message.tags = [kind]  # type: ignore[attr-defined]
    return message


# --------------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True)
class SendResult:
    message_id: int
    status: str
    error: str
    retry_in: dt.timedelta | None


_CLAIM_SQL = f"""
UPDATE {_MESSAGES} e
SET attempts = e.attempts + 1, next_attempt_at = %(lease)s
FROM (
    SELECT id FROM {_MESSAGES}
    WHERE status = 'queued' AND next_attempt_at <= %(due)s {{one}}
    ORDER BY next_attempt_at LIMIT 1
    FOR UPDATE SKIP LOCKED
) picked
WHERE e.id = picked.id
RETURNING e.id
"""


def _claim(*, now: dt.datetime, message_id: int | None, due: dt.datetime) -> EmailMessage | None:
    sql = _CLAIM_SQL.format(one="AND id = %(id)s" if message_id is not None else "")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, {"lease": now + LEASE, "due": due, "id": message_id})
        row = cur.fetchone()
    if row is None:
        return None
    return EmailMessage.objects.select_related("program", "member").get(pk=row[0])


def _suppressed_address(email: str) -> bool:
    return EmailSuppression.objects.filter(email=email.lower()).exists()


def _why_not(message: EmailMessage, settings_row: EmailSettings) -> str:
    """Why this message must not be sent now ("" : it may)."""
    info = email_kinds.KINDS.get(message.kind)
    if info is None:
        return f"Unknown kind {message.kind}."
    if not settings_row.sends(message.kind):
        return "The program no longer sends this kind of email."
    to = _recipient(message, settings_row)
    if not to:
        return "No address."
    if _suppressed_address(to):
        return "The address is suppressed (bounce or complaint)."
    member = message.member
    if info.to == "member":
        if member is None:
            return "The member no longer exists."
        marketing = info.marketing and not message.data.get("transactional")
        if marketing and not member.email_consent:
            return "The member has not consented to marketing emails."
        opted = EmailOptOut.objects.filter(member_id=member.pk).filter(
            Q(kind=message.kind) | Q(kind=EmailOptOut.ALL_MARKETING if marketing else message.kind)
        )
        if opted.exists():
            return "The member unsubscribed from this kind of email."
    return ""


def _recipient(message: EmailMessage, settings_row: EmailSettings) -> str:
    info = email_kinds.KINDS.get(message.kind)
    if info is not None and info.to == "admin":
        return message.to_email or settings_row.admin_email
    if message.kind in email_kinds.CAPTURED and "rendered" in message.data:
        return message.to_email  # captured before the member's address was erased
    return message.member.email if message.member is not None else ""


def _without_rendering(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in ("rendered", "language")}


def _finish(message_id: int, **fields: Any) -> None:
    EmailMessage.objects.filter(pk=message_id).update(status_at=timezone.now(), **fields)


def _attempt(
    *, now: dt.datetime, message_id: int | None, due: dt.datetime, email_connection: Any = None
) -> SendResult | None:
    message = _claim(now=now, message_id=message_id, due=due)
    if message is None:
        return None
    program = message.program
    settings_row = program_settings(program.pk)
    reason = _why_not(message, settings_row)
    if reason:
        _finish(message.pk, status=Status.SUPPRESSED, next_attempt_at=None, last_error=reason)
        return SendResult(message.pk, Status.SUPPRESSED, reason, None)
    to = _recipient(message, settings_row)
    member = message.member if email_kinds.KINDS[message.kind].to == "member" else None
    language = language_of(program, member)
    captured = message.data.get("rendered") if message.kind in email_kinds.CAPTURED else None
    # A captured message is sent as it was rendered, without the unsubscribe headers of a member
    # whose data is gone; once it is sent or failed for good its address and rendering are erased.
    forget = {"to_email": "", "data": _without_rendering(message.data)} if captured is not None else {}
    try:
        if captured is not None:
            rendered = email_render.Rendered(subject=captured["subject"], html=captured["html"], text=captured["text"])
            language = message.data.get("language") or language
            member = None
        else:
            rendered = message_render(program=program, member=member, kind=message.kind, data=message.data)
        email = email_build(
            program=program, member=member, kind=message.kind, to=to, rendered=rendered, outbox_id=message.pk
        )
        if email_connection is not None:
            email.connection = email_connection
        email.send()
    except Exception as exc:  # the ESP refused or could not be reached: retry later
        error = f"{type(exc).__name__}: {exc}"[:500]
        if message.attempts >= MAX_ATTEMPTS:
            _finish(
                message.pk, status=Status.FAILED, next_attempt_at=None, last_error=error, **{"to_email": to, **forget}
            )
            logger.warning("email %s failed for good: %s", message.pk, error)
            return SendResult(message.pk, Status.FAILED, error, None)
        retry_in = backoff(message.attempts)
        _finish(message.pk, next_attempt_at=now + retry_in, last_error=error, to_email=to)
        logger.info("email %s: %s; retry in %s", message.pk, error, retry_in)
        return SendResult(message.pk, Status.QUEUED, error, retry_in)
    status = getattr(email, "anymail_status", None)
    esp_id = (getattr(status, "message_id", None) or "") if status is not None else ""
    kept = {"to_email": to, "subject": rendered.subject} if not forget else {**forget, "subject": ""}
    _finish(
        message.pk,
        status=Status.SENT,
        next_attempt_at=None,
        sent_at=timezone.now(),
        language=language,
        esp_message_id=str(esp_id)[:200],
        last_error="",
        **kept,
    )
    return SendResult(message.pk, Status.SENT, "", None)


def message_send(*, message_id: int, now: dt.datetime | None = None, email_connection: Any = None) -> SendResult | None:
    """Send one queued message now if it is due (within `EARLY`) and no other worker holds it.
    None: nothing to do (sent already, not due, or taken). Must not run inside a transaction:
    the claim commits before the send. `email_connection`: an email backend instance instead of
    EMAIL_BACKEND's (the demo's simulated ESP)."""
    now = now or timezone.now()
    return _attempt(now=now, message_id=message_id, due=now + EARLY, email_connection=email_connection)


@dataclass
class DeliverResult:
    attempted: int = 0
    sent: int = 0
    suppressed: int = 0
    failed: int = 0


def outbox_emails_deliver(*, now: dt.datetime | None = None, limit: int = 500) -> DeliverResult:
    """Send the queued messages due at `now`, most overdue first, at most `limit`: the safety
    net behind the per-message tasks. Safe on several workers at once and idempotent."""
    now = now or timezone.now()
    result = DeliverResult()
    for _ in range(limit):
        attempt = _attempt(now=now, message_id=None, due=now)
        if attempt is None:
            break
        result.attempted += 1
        if attempt.status == Status.SENT:
            result.sent += 1
        elif attempt.status == Status.SUPPRESSED:
            result.suppressed += 1
        elif attempt.status == Status.FAILED:
            result.failed += 1
    return result


def messages_resend(*, message_ids: Sequence[int], now: dt.datetime | None = None) -> int:
    """Staff: send these messages again (whatever their status), now. Returns how many."""
    now = now or timezone.now()
    ids = list(EmailMessage.objects.filter(pk__in=list(message_ids)).values_list("pk", flat=True))
    with transaction.atomic():
        count = EmailMessage.objects.filter(pk__in=ids).update(
            status=Status.QUEUED, next_attempt_at=now, attempts=0, last_error="", status_at=now
        )
        messages_queued(ids)
    return count


def send_test_email(
    *,
    program: Program,
    kind: str,
    to: str,
    member: Member | None,
    data: dict[str, Any],
    parts: email_render.Parts | None = None,
    language: str | None = None,
) -> email_render.Rendered:
    """Send one rendering of `kind` to `to` at once (the admin's "send me a test"), outside
    the outbox. The subject is marked as a test."""
    rendered = message_render(
        program=program, member=member, kind=kind, data=data, parts=parts, language=language, live_links=False
    )
    rendered = email_render.Rendered(subject=f"[TEST] {rendered.subject}", html=rendered.html, text=rendered.text)
    # No one-click unsubscribe header: a mail app's "unsubscribe" button on a test sent to staff
    # must not unsubscribe the member it was rendered for.
    email_build(program=program, member=None, kind=kind, to=to, rendered=rendered, outbox_id=None).send()
    return rendered


# --------------------------------------------------------------------------------------------
# Delivery statuses from the ESP, suppressions and opt-outs

# An ESP event, in anymail's normalised words, and the status it gives a sent message.
TRACKING_STATUS = {
    "delivered": Status.DELIVERED,
    "bounced": Status.BOUNCED,
    "complained": Status.COMPLAINED,
    "rejected": Status.FAILED,
    "failed": Status.FAILED,
}
# Later states are not overwritten by earlier ones arriving late (a "delivered" after a complaint).
_RANK = {Status.SENT: 1, Status.DELIVERED: 2, Status.FAILED: 3, Status.BOUNCED: 3, Status.COMPLAINED: 4}


def suppression_add(*, email: str, reason: str, detail: str = "", now: dt.datetime | None = None) -> bool:
    """Stop all mail to `email`. Returns False when it was suppressed already."""
    _row, created = EmailSuppression.objects.get_or_create(
        email=email.strip().lower(),
        defaults={"reason": reason, "detail": detail[:500], "created_at": now or timezone.now()},
    )
    return created


def history_messages_settle(*, program_id: int, before: dt.datetime, status: str = Status.DELIVERED) -> int:
    """Mark the program's queued messages created before `before` as `status` without sending
    them: for a history loaded after the fact (`load_demo`), whose events are months old and
    whose emails were never meant to leave. One UPDATE; returns how many rows."""
    with connection.cursor() as cur:
        cur.execute(
            f"""
            UPDATE {_MESSAGES} e
            SET status = %(status)s, next_attempt_at = NULL, to_email = COALESCE(NULLIF(e.to_email, ''), m.email, ''),
                sent_at = e.created_at, status_at = e.created_at
            FROM {_MESSAGES} e2 LEFT JOIN {_MEMBERS} m ON m.id = e2.member_id
            WHERE e.id = e2.id AND e.program_id = %(program)s AND e.status = 'queued' AND e.created_at < %(before)s
            """,
            {"status": status, "program": program_id, "before": before},
        )
        return cur.rowcount


def suppression_remove(*, emails: Sequence[str]) -> int:
    """Staff: write to these addresses again (the member fixed their mailbox). Returns how many
    suppressions were lifted."""
    deleted, _ = EmailSuppression.objects.filter(email__in=[e.strip().lower() for e in emails]).delete()
    return deleted


def opt_out(*, member_id: int, kind: str, via: str, now: dt.datetime | None = None) -> bool:
    """The member no longer wants `kind` (or any marketing email: `EmailOptOut.ALL_MARKETING`).
    Idempotent: False when already opted out."""
    _row, created = EmailOptOut.objects.get_or_create(
        member_id=member_id, kind=kind, defaults={"via": via, "created_at": now or timezone.now()}
    )
    return created


def opt_in(*, member_id: int, kind: str) -> bool:
    deleted, _ = EmailOptOut.objects.filter(member_id=member_id, kind=kind).delete()
    return bool(deleted)


def preference_kinds() -> list[email_kinds.KindInfo]:
    """The kinds a member may switch off: the member-facing ones, sign-in links aside."""
    return [
        info for info in email_kinds.KINDS.values() if info.to == "member" and info.kind not in email_kinds.ALWAYS_ON
    ]


def preferences_read(*, member_id: int) -> dict[str, bool]:
    """Each kind of `preference_kinds` -> whether the member receives it (not opted out of it,
    nor, for a marketing kind, of every marketing email). 1 query."""
    opted = set(EmailOptOut.objects.filter(member_id=member_id).values_list("kind", flat=True))
    return {
        info.kind.value: not (info.kind.value in opted or (info.marketing and EmailOptOut.ALL_MARKETING in opted))
        for info in preference_kinds()
    }


def preferences_save(*, member_id: int, wanted: Iterable[str], via: str) -> None:
    """The member's ticks on a preferences page (the emailed link's or the portal's): every
    kind of `preference_kinds` in `wanted` is on, every other one off; ticking any marketing
    kind lifts an "all marketing" opt-out."""
    wanted = set(wanted)
    kinds = preference_kinds()
    with transaction.atomic():
        for info in kinds:
            if info.kind.value in wanted:
                opt_in(member_id=member_id, kind=info.kind.value)
            else:
                opt_out(member_id=member_id, kind=info.kind.value, via=via)
        if {info.kind.value for info in kinds if info.marketing} & wanted:
            opt_in(member_id=member_id, kind=EmailOptOut.ALL_MARKETING)


def member_messages_erase(*, member_id: int, now: dt.datetime | None = None) -> int:
    """A member was anonymised: blank the address and subject of their emails (kind, status and
    dates stay, for the outbox's statistics) and suppress those still queued. The opt-outs are
    kept (docs/decisions.md). Returns the number of messages changed; 2 statements."""
    now = now or timezone.now()
    # The captured answer to the deletion request is left to go out (it erases itself when sent).
    member_kinds = [
        kind for kind, info in email_kinds.KINDS.items() if info.to == "member" and kind not in email_kinds.CAPTURED
    ]
    mine = EmailMessage.objects.filter(member_id=member_id, kind__in=member_kinds)
    mine.filter(status=Status.QUEUED).update(
        status=Status.SUPPRESSED, next_attempt_at=None, last_error="The member was anonymised.", status_at=now
    )
    return mine.exclude(to_email="", subject="").update(to_email="", subject="")


# --------------------------------------------------------------------------------------------
# A program's templates and settings (the admin's email pages)


class TemplateInvalid(Exception):
    """A template the sandbox refuses: `problems` maps a part to what is wrong with it."""

    def __init__(self, problems: dict[str, list[str]]) -> None:
        super().__init__("; ".join(p for found in problems.values() for p in found))
        self.problems = problems


def _same_source(first: str, second: str) -> bool:
    return " ".join(first.split()) == " ".join(second.split())


def email_template_save(
    *,
    program: Program,
    kind: str,
    language: str,
    subject: str,
    html_body: str,
    text_body: str,
    user: Any = None,
) -> EmailTemplate | None:
    """Store the merchant's version of `kind` in `language`. A part left empty, or equal to the
    shipped default (whitespace aside), is stored empty so that it keeps following the default;
    with every part empty the row is removed. Raises `TemplateInvalid` (nothing written) when a
    part fails `email_render.template_problems`. Returns the row, or None when none is left."""
    if kind not in email_kinds.KINDS or language not in email_render.LANGUAGE_CODES:
        raise ValueError(f"Unknown kind or language: {kind}, {language}")
    default = email_render.default_parts(kind, language)
    parts = {"subject": subject.strip(), "html_body": html_body, "text_body": text_body}
    problems = {
        name: found for name, source in parts.items() if (found := email_render.template_problems(source, kind))
    }
    if problems:
        raise TemplateInvalid(problems)
    for name, source in parts.items():
        if _same_source(source, getattr(default, name)) or not source.strip():
            parts[name] = ""
    with transaction.atomic():
        if not any(parts.values()):
            EmailTemplate.objects.filter(program=program, kind=kind, language=language).delete()
            return None
        row, _created = EmailTemplate.objects.update_or_create(
            program=program,
            kind=kind,
            language=language,
            defaults={**parts, "updated_by": user if getattr(user, "pk", None) else None},
        )
    return row


def email_template_reset(*, program: Program, kind: str, language: str) -> bool:
    """Go back to the shipped default of `kind` in `language`. False: it was the default."""
    deleted, _ = EmailTemplate.objects.filter(program=program, kind=kind, language=language).delete()
    return bool(deleted)


SETTINGS_FIELDS = (
    "enabled_kinds",
    "from_name",
    "from_email",
    "reply_to",
    "admin_email",
    "postal_address",
    "expiry_warning_days",
    "reminder_frequency",
    "tier_at_risk_days",
    "welcome_on_import",
)


def email_settings_save(*, program: Program, **fields: Any) -> EmailSettings:
    """Create or change a program's email settings (validated; the always-on kinds stay on).
    Every process forgets its cached copy within `program_settings`' few seconds."""
    unknown = set(fields) - set(SETTINGS_FIELDS)
    if unknown:
        raise TypeError(f"Unknown email settings: {', '.join(sorted(unknown))}")
    if "enabled_kinds" in fields:
        chosen = set(fields["enabled_kinds"]) | email_kinds.ALWAYS_ON
        fields["enabled_kinds"] = [kind for kind in email_kinds.KINDS if kind in chosen]
    with transaction.atomic():
        row = EmailSettings.objects.select_for_update().filter(program=program).first()
        if row is None:
            row = EmailSettings(program=program)
        for name, value in fields.items():
            setattr(row, name, value)
        row.full_clean()
        row.save()
    settings_forget()
    return row


@dataclass(frozen=True)
class TrackingOutcome:
    message_id: int | None
    status: str  # the message's status after the event ("" : no message of ours)
    changed: bool
    suppressed: bool


def _tracked_message(*, outbox_id: Any, esp_message_id: str) -> EmailMessage | None:
    """The outbox row an ESP event is about: by the `outbox_id` metadata every send carries,
    else by the ESP's message id (indexed). 1 query."""
    if outbox_id is not None and str(outbox_id).isdigit():
        found = EmailMessage.objects.filter(pk=int(outbox_id)).first()
        if found is not None:
            return found
    if esp_message_id:
        bare = esp_message_id.strip("<>")
        return (
            EmailMessage.objects.filter(esp_message_id__in=[esp_message_id, bare, f"<{bare}>"]).order_by("-id").first()
        )
    return None


@transaction.atomic
def message_tracked(
    *,
    event_type: str,
    outbox_id: Any = None,
    esp_message_id: str = "",
    recipient: str = "",
    description: str = "",
    at: dt.datetime | None = None,
) -> TrackingOutcome:
    """Apply one delivery event reported by the ESP (anymail's normalised `event_type`).

    - The message's status moves forward only (`_RANK`): a late "delivered" never undoes a
      bounce or a complaint, and a repeated event (ESPs retry webhooks) changes nothing.
      A message not (yet) marked sent (queued again, or suppressed) keeps its status.
    - A hard bounce ("bounced"; a soft one arrives as "deferred") or a complaint suppresses the
      address for every program, whether or not the message is found.
    Events of other types (opened, clicked, deferred...) change nothing."""
    status = TRACKING_STATUS.get(event_type)
    message = _tracked_message(outbox_id=outbox_id, esp_message_id=esp_message_id) if status else None
    changed = False
    if message is not None and status is not None and message.status in _RANK:
        fields: dict[str, Any] = {"status": status, "status_at": at or timezone.now()}
        if status != Status.DELIVERED and description:
            fields["last_error"] = description[:500]
        # One conditional UPDATE: two events racing for one row both compare to the stored status.
        lower = [s for s, rank in _RANK.items() if rank < _RANK[status]]
        changed = bool(EmailMessage.objects.filter(pk=message.pk, status__in=lower).update(**fields))
        message.refresh_from_db(fields=["status"])
    suppressed = False
    address = recipient or (message.to_email if message is not None else "")
    if event_type in ("bounced", "complained") and address:
        reason = EmailSuppression.Reason.BOUNCED if event_type == "bounced" else EmailSuppression.Reason.COMPLAINED
        suppressed = suppression_add(email=address, reason=reason, detail=description, now=at)
    return TrackingOutcome(
        message_id=message.pk if message is not None else None,
        status=message.status if message is not None else "",
        changed=changed,
        suppressed=suppressed,
    )
