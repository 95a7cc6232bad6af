"""The emails part of `manage.py load_demo` (run on `demo_loaded`, after the other apps): an
outbox that looks lived in. Once per program: a program with demo messages is left alone.

- The history's own messages (a welcome per enrolment, a points_earned per purchase, months
  old) are settled as delivered without being sent (`emails.history_messages_settle`): nobody
  is mailed about a history made up after the fact.
- Then one message of every kind to demo members, queued and sent through the real path
  (`message_queue`, `message_send`) to a simulated ESP (`DemoEsp`: nothing leaves the machine,
  nothing is printed), and the ESP's events applied through the webhook's own service
  (`emails.message_tracked`): most are delivered, one hard bounce suppresses its address, a
  member who unsubscribed from birthday emails gets a `suppressed` one, and a statement waits
  in the queue for a retry after a simulated ESP outage.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from types import SimpleNamespace
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.db.models import Count

from loyalty.models import Member, Program

from . import email_kinds, emails
from .email_kinds import EmailKind
from .models import EmailMessage, EmailSettings

DEMO_SOURCE = "demo:"


class DemoEsp(BaseEmailBackend):
    """A stand-in ESP: accepts every message (an id like Mailgun's), or, in `outage`, refuses
    with Mailgun's 503."""

    def __init__(self, *args: Any, outage: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outage = outage

    def send_messages(self, email_messages: Any) -> int:
        if self.outage:
            raise ConnectionError("Mailgun API response 503 (Service Unavailable): try again later")
        for message in email_messages:
            outbox_id = message.extra_headers.get("X-Loyalty-Message", "x")
            message.anymail_status = SimpleNamespace(message_id=f"<demo.{outbox_id}@mg.demo-coffee.example>")
        return len(email_messages)


def _sample_data(kind: str, now: dt.datetime) -> dict[str, Any]:
    day = now.date()
    coupon = {
        "code": "BEANS-7Q4K-2M",
        "reward": "€5 off your order",
        "value": "€5.00",
        "valid_until": (day + dt.timedelta(days=60)).isoformat(),
        "how_to_use": "Show the code at the till or type it at checkout.",
    }
    gold = {"name": "Gold", "benefits": "Double beans on Saturdays, free shipping", "multiplier": "1.5"}
    return {
        EmailKind.WELCOME: {"signup_points": 50},
        EmailKind.POINTS_EARNED: {
            "points": 43,
            "entries": [{"points": 43, "reason": "1 bean per euro"}],
            "activity": {
                "type": "purchase",
                "order_id": "DEMO-4211",
                "amount": "42.50",
                "occurred_on": day.isoformat(),
            },
        },
        EmailKind.POINTS_ADDED: {"points": 120, "reason": "Sorry for the late delivery"},
        EmailKind.POINTS_REMOVED: {"points": 40, "reason": "Order DEMO-4102 was returned"},
        EmailKind.REWARD_REDEEMED: {"points": 250, "coupon": coupon},
        EmailKind.BUDGET_THRESHOLD: {
            "budget": {
                "what": 'rule "Double beans weekend"',
                "name": "Double beans weekend",
                "scope": "rule",
                "period": "2026-12",
                "period_label": "month 2026-12",
                "limit": 50000,
                "used": 40120,
                "percent": 80,
            }
        },
        EmailKind.REWARD_REDEEMED_ADMIN: {"points": 250, "coupon": coupon},
        EmailKind.POINTS_EXPIRING: {
            "points": 180,
            "lots": [{"points": 180, "expires_on": (day + dt.timedelta(days=30)).isoformat()}],
            "expires_on": (day + dt.timedelta(days=30)).isoformat(),
            "last_chance": False,
        },
        EmailKind.POINTS_REMINDER: {
            "period": "monthly",
            "expiring_soon": 60,
            "next_tier": {"name": "Gold", "points_needed": 35},
            "rewards": [{"name": "Free shipping", "points": 150, "description": ""}],
        },
        EmailKind.REWARD_WITHIN_REACH: {"reward": {"name": "10% off", "points": 400, "description": ""}},
        EmailKind.TIER_UPGRADED: {"tier": gold, "previous_tier": {"name": "Silver"}},
        EmailKind.TIER_DOWNGRADED: {
            "tier": {"name": "Silver", "benefits": "", "multiplier": "1.2"},
            "previous_tier": {"name": "Gold"},
        },
        EmailKind.TIER_AT_RISK: {
            "tier": gold,
            "evaluation_on": (day + dt.timedelta(days=14)).isoformat(),
            "needed": 60,
            "lower_tier": {"name": "Silver"},
        },
        EmailKind.BIRTHDAY: {"points": 100},
        EmailKind.REFERRAL_REWARDED: {"points": 200, "friend": {"first_name": "Hugo"}, "role": "referrer"},
        EmailKind.CARD_CLAIMED: {"card": {"number": "6274 0012 3456 7891", "last_digits": "7891"}, "points_moved": 35},
        EmailKind.LOGIN_LINK: {"login_url": "http://127.0.0.1:8000/p/demo/", "valid_minutes": 15},
        EmailKind.DELETION_CONFIRMED: {
            "requested_on": (day - dt.timedelta(days=3)).isoformat(),
            "erased_on": day.isoformat(),
        },
        EmailKind.DELETION_DECLINED: {
            "requested_on": (day - dt.timedelta(days=2)).isoformat(),
            "reason": "Your order DEMO-4211 is still on its way: we can delete your data once it is delivered.",
        },
        EmailKind.CUSTOM: {"automation": {"name": "Win-back"}, "points": 100, "subject": "We miss you"},
    }[kind]


def demo_emails_load(*, program: Program, now: dt.datetime) -> str:
    if EmailMessage.objects.filter(program=program, source__startswith=DEMO_SOURCE).exists():
        return "Emails: the demo outbox is there; left as it is."
    EmailSettings.objects.update_or_create(
        program=program,
        defaults={
            "enabled_kinds": [kind.value for kind in EmailKind],
            "admin_email": "owner@demo-coffee.example",
            "reply_to": "hello@demo-coffee.example",
            "postal_address": "Demo Coffee Roasters, 12 quai des Chartrons, 33000 Bordeaux, France",
        },
    )
    emails.settings_forget()
    settled = emails.history_messages_settle(program_id=program.pk, before=now)

    members = list(Member.objects.filter(program=program, status="active").exclude(email="").order_by("id")[:60])
    # The member whose address bounces gets nothing else (the bounce suppresses the address).
    bouncing, others = members[-1], members[:-1] or members
    consenting = itertools.cycle([m for m in others if m.email_consent] or others)
    anyone = itertools.cycle(others)
    queued: dict[str, int] = {}
    with transaction.atomic():
        for kind in EmailKind:
            info = email_kinds.KINDS[kind]
            if kind == EmailKind.TIER_DOWNGRADED:
                member = bouncing
            else:
                member = next(consenting) if info.marketing else next(anyone)
            message_id = emails.message_queue(
                program_id=program.pk,
                member_id=member.pk,
                kind=kind,
                source=f"{DEMO_SOURCE}{kind}",
                data=_sample_data(kind, now),
                now=now - dt.timedelta(hours=2),
                transactional=not info.marketing,
            )
            if message_id is not None:
                queued[kind] = message_id
        # A member who unsubscribed from birthday emails: theirs is suppressed at send time.
        fan = next(consenting)
        emails.opt_out(member_id=fan.pk, kind=EmailKind.BIRTHDAY, via="unsubscribe link", now=now)
        unsubscribed = emails.message_queue(
            program_id=program.pk,
            member_id=fan.pk,
            kind=EmailKind.BIRTHDAY,
            source=f"{DEMO_SOURCE}birthday-unsubscribed",
            data={"points": 100},
            now=now - dt.timedelta(hours=1),
        )

    esp = DemoEsp()
    for kind, message_id in queued.items():
        if kind == EmailKind.POINTS_REMINDER:
            continue
        emails.message_send(message_id=message_id, now=now, email_connection=esp)
    if unsubscribed is not None:
        emails.message_send(message_id=unsubscribed, now=now, email_connection=esp)

    # The ESP's events, as its webhook would report them: a hard bounce (the address is then
    # suppressed), the welcome still on its way, everything else delivered.
    bounced = queued.get(EmailKind.TIER_DOWNGRADED)
    for kind, message_id in queued.items():
        if kind in (EmailKind.POINTS_REMINDER, EmailKind.WELCOME):
            continue
        if message_id == bounced:
            emails.message_tracked(
                event_type="bounced",
                outbox_id=message_id,
                description="550 5.1.1 The email account that you tried to reach does not exist",
                at=now - dt.timedelta(minutes=30),
            )
        else:
            emails.message_tracked(event_type="delivered", outbox_id=message_id, at=now - dt.timedelta(minutes=90))

    # A statement caught by an ESP outage: attempts made, retried with backoff, still queued.
    reminder = queued.get(EmailKind.POINTS_REMINDER)
    if reminder is not None:
        down, moment = DemoEsp(outage=True), now - dt.timedelta(minutes=10)
        # The simulated outage's retries are logged at INFO: not on make run's console.
        email_log = logging.getLogger(emails.__name__)
        level = email_log.level
        email_log.setLevel(logging.WARNING)
        try:
            while (result := emails.message_send(message_id=reminder, now=moment, email_connection=down)) is not None:
                if result.retry_in is None or moment + result.retry_in > now:
                    break
                moment += result.retry_in
        finally:
            email_log.setLevel(level)

    counts = dict(
        EmailMessage.objects.filter(program=program, source__startswith=DEMO_SOURCE)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return (
        f"Emails: {settled} history messages settled as delivered; one of each kind sent to demo members ({summary})."
    )
