"""The webhook events (docs/webhooks.md): what each signal of the lower apps becomes.

Each function asks first which of the program's endpoints want the event (1 query) and stops
there when none does; otherwise it builds the small, stable `data` of each event (ids,
points, balances, the member's `external_id`; never an email or a name) and hands the events
to `services.deliveries_record`.

Ledger entries map to events by kind, one event per posting, member and event type carrying
all its entries (`entries`, `points` their sum), so that the `points` of the `points.*` events
of a member add up to the change of the member's balance:
- earn -> `points.earned`; redeem -> `points.redeemed`; expire -> `points.expired`;
- adjust (staff or API, either sign), reversal (a refund taking earned points back, or the
  points of a cancelled or expired coupon coming back) and transfer (either side) ->
  `points.adjusted`, with `entry.kind` telling which.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from loyalty.models import LedgerEntry, Member
from loyalty.services import Balance
from rewards.models import Redemption
from tiers.models import Tier, TierChange

from . import selectors, services
from .models import EventType, ExpiryScanCursor, WebhookEndpoint
from .services import Event

Kind = LedgerEntry.Kind

ENTRY_EVENTS = {
    Kind.EARN: EventType.POINTS_EARNED,
    Kind.REDEEM: EventType.POINTS_REDEEMED,
    Kind.EXPIRE: EventType.POINTS_EXPIRED,
    Kind.ADJUST: EventType.POINTS_ADJUSTED,
    Kind.REVERSAL: EventType.POINTS_ADJUSTED,
    Kind.TRANSFER: EventType.POINTS_ADJUSTED,
}

# Ledger entries scanned per transaction by the expiry collection (primary-key range).
EXPIRY_SCAN_CHUNK = 50_000


def _external_ids(member_ids: Iterable[int]) -> dict[int, str | None]:
    return dict(Member.objects.filter(pk__in=set(member_ids)).values_list("pk", "external_id"))


def _entry(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "points": entry.points,
        "created_at": entry.created_at,
        "available_at": entry.available_at,
        "expires_at": entry.expires_at,
        "reason": entry.reason,
        "reference": entry.reference,
    }


def _entry_data(
    entry: LedgerEntry, *, external_id: str | None, balance: dict[str, int] | None, redemption: Redemption | None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "member_id": entry.member_id,
        "external_id": external_id,
        "entry": _entry(entry),
        "balance": balance,
    }
    if entry.kind == Kind.REDEEM:
        data["redemption"] = (
            {"id": redemption.pk, "code": redemption.code, "reward_id": redemption.reward_id}
            if redemption is not None
            else None
        )
    return data


def points_posted_events(
    *, program_id: int, member_id: int, balance: Balance | None, entries: Sequence[LedgerEntry]
) -> list[int]:
    """The `points.*` events of one posting for one member: one event per event type, carrying
    all the posting's entries of that type (a purchase that fires three rules is one
    `points.earned` with three `entries`). `entry` is the first of them (the event's key,
    `entry:<id>`), `points` their sum. `balance` is the member's balance right after the posting
    (None from bulk credits). Queries: 1 when no endpoint wants these events (none while
    the answer is remembered); else + 1 (external id) + 1 for a redemption + 1 insert."""
    wanted = {ENTRY_EVENTS[e.kind] for e in entries if e.kind in ENTRY_EVENTS}
    endpoints = selectors.endpoints_subscribed(program_id=program_id, event_types=wanted) if wanted else []
    if not endpoints:
        return []
    external_id = _external_ids([member_id]).get(member_id)
    redeem_ids = [e.id for e in entries if e.kind == Kind.REDEEM]
    redemptions = {r.entry_id: r for r in Redemption.objects.filter(entry_id__in=redeem_ids)} if redeem_ids else {}
    balance_data = asdict(balance) if balance is not None else None
    by_type: dict[str, list[LedgerEntry]] = {}
    for e in sorted(entries, key=lambda e: e.id):
        if e.kind in ENTRY_EVENTS:
            by_type.setdefault(ENTRY_EVENTS[e.kind], []).append(e)
    events = []
    for event_type, mine in by_type.items():
        first = mine[0]
        data = _entry_data(first, external_id=external_id, balance=balance_data, redemption=redemptions.get(first.id))
        data["entries"] = [_entry(e) for e in mine]
        data["points"] = sum(e.points for e in mine)
        events.append(Event(type=event_type, key=f"entry:{first.id}", at=first.created_at, data=data))
    return services.deliveries_record(endpoints=endpoints, events=events)


def _member_enrolled(member_id: int, external_id: str | None, channel: str, at: dt.datetime) -> Event:
    return Event(
        type=EventType.MEMBER_ENROLLED,
        key=f"member:{member_id}:enrolled",
        at=at,
        data={"member_id": member_id, "external_id": external_id, "channel": channel, "enrolled_at": at},
    )


def member_enrolled_events(*, program_id: int, member: Member, channel: str) -> list[int]:
    endpoints = selectors.endpoints_subscribed(program_id=program_id, event_types={EventType.MEMBER_ENROLLED})
    if not endpoints:
        return []
    event = _member_enrolled(member.pk, member.external_id, channel, member.enrolled_at)
    return services.deliveries_record(endpoints=endpoints, events=[event])


def members_imported_events(*, program_id: int, member_ids: Sequence[int]) -> list[int]:
    """`member.enrolled` for each member a CSV import created (the import sends one signal for
    all of them). 1 query when nobody listens; else 1 read of the members + 1 insert."""
    endpoints = selectors.endpoints_subscribed(program_id=program_id, event_types={EventType.MEMBER_ENROLLED})
    if not endpoints or not member_ids:
        return []
    rows = Member.objects.filter(pk__in=list(member_ids)).values_list(
        "pk", "external_id", "enrollment_channel", "enrolled_at"
    )
    events = [_member_enrolled(*row) for row in rows]
    return services.deliveries_record(endpoints=endpoints, events=events)


def _tier(tier: Tier | None) -> dict[str, Any] | None:
    return None if tier is None else {"id": tier.pk, "name": tier.name, "position": tier.position}


def tier_changed_events(*, program_id: int, member_id: int, change: TierChange) -> list[int]:
    endpoints = selectors.endpoints_subscribed(program_id=program_id, event_types={EventType.TIER_CHANGED})
    if not endpoints:
        return []
    tiers = Tier.objects.in_bulk([t for t in (change.from_tier_id, change.to_tier_id) if t is not None])
    event = Event(
        type=EventType.TIER_CHANGED,
        key=f"tierchange:{change.pk}",
        at=change.at,
        data={
            "member_id": member_id,
            "external_id": _external_ids([member_id]).get(member_id),
            "change_id": change.pk,
            "kind": change.kind,
            "from_tier": _tier(tiers.get(change.from_tier_id)),
            "to_tier": _tier(tiers.get(change.to_tier_id)),
            "at": change.at,
        },
    )
    return services.deliveries_record(endpoints=endpoints, events=[event])


def _redemption_data(redemption: Redemption) -> dict[str, Any]:
    return {
        "redemption_id": redemption.pk,
        "code": redemption.code,
        "member_id": redemption.member_id,
        "external_id": _external_ids([redemption.member_id]).get(redemption.member_id),
        "reward_id": redemption.reward_id,
        "kind": redemption.kind,
        "value": redemption.value,
        "sku": redemption.sku,
        "points": redemption.points,
        "status": redemption.status,
        "issued_at": redemption.issued_at,
    }


def redemption_used_events(*, program_id: int, redemption: Redemption) -> list[int]:
    endpoints = selectors.endpoints_subscribed(program_id=program_id, event_types={EventType.REDEMPTION_USED})
    if not endpoints:
        return []
    at = redemption.used_at or timezone.now()
    data = {**_redemption_data(redemption), "order_id": redemption.order_id, "used_at": at}
    event = Event(type=EventType.REDEMPTION_USED, key=f"redemption:{redemption.pk}:used", at=at, data=data)
    return services.deliveries_record(endpoints=endpoints, events=[event])


def redemption_cancelled_events(*, program_id: int, redemption: Redemption, refunded: bool) -> list[int]:
    endpoints = selectors.endpoints_subscribed(program_id=program_id, event_types={EventType.REDEMPTION_CANCELLED})
    if not endpoints:
        return []
    at = redemption.cancelled_at or timezone.now()
    data = {
        **_redemption_data(redemption),
        "refunded": refunded,
        "refund_entry_id": redemption.refund_entry_id,
        "cancelled_at": at,
    }
    event = Event(type=EventType.REDEMPTION_CANCELLED, key=f"redemption:{redemption.pk}:cancelled", at=at, data=data)
    return services.deliveries_record(endpoints=endpoints, events=[event])


def budget_threshold_events(*, program_id: int, budget: dict[str, Any], now: dt.datetime) -> list[int]:
    """`budget.threshold`: a budget's use first reached 80 % or 100 % of a limit in a period
    (docs/budgets.md). Keyed by budget, period and percent, so it is sent once. Queries: 1 when
    nobody listens (none while remembered); else + 1 insert."""
    endpoints = selectors.endpoints_subscribed(program_id=program_id, event_types={EventType.BUDGET_THRESHOLD})
    if not endpoints:
        return []
    data = {
        "budget": {
            "scope": budget["scope"],
            "id": budget["id"],
            "name": budget["name"],
            "period": budget["period"],
            "limit": budget["limit"],
            "used": budget["used"],
        },
        "percent": budget["percent"],
        "at": now,
    }
    key = f"budget:{budget['scope']}:{budget['id']}:{budget['period']}:{budget['percent']}"
    event = Event(type=EventType.BUDGET_THRESHOLD, key=key, at=now, data=data)
    return services.deliveries_record(endpoints=endpoints, events=[event], now=now)


def expired_points_collect(*, chunk: int = EXPIRY_SCAN_CHUNK) -> int:
    """`points.expired` for the expire entries written since the last scan (the expiry job
    announces only totals). Walks the ledger's primary key from the cursor to the current end,
    `chunk` ids per transaction, under the cursor's row lock (two scans take turns); reads
    only the expire entries of programs with a subscribed endpoint. With no such endpoint it
    only moves the cursor to the end. Idempotent: the deliveries' (endpoint, entry) key stops
    a rescan from sending twice. Returns the number of deliveries written.

    Assumes expire entries are committed before the scan runs past their ids: it is run when
    an expiry job has finished, and one expiry job runs at a time."""
    written = 0
    while True:
        with transaction.atomic(durable=True):
            cursor = ExpiryScanCursor.objects.select_for_update().filter(pk=1).first()
            if cursor is None:  # created at the ledger's end by migration 0002; gone only after a flush
                cursor = ExpiryScanCursor.objects.create(pk=1, last_entry_id=0)
            end = LedgerEntry.objects.aggregate(m=Max("id"))["m"] or 0
            if end <= cursor.last_entry_id:
                return written
            endpoints = list(
                WebhookEndpoint.objects.filter(is_active=True, events__contains=[EventType.POINTS_EXPIRED])
            )
            if not endpoints:
                ExpiryScanCursor.objects.filter(pk=1).update(last_entry_id=end, updated_at=timezone.now())
                return written
            upto = min(end, cursor.last_entry_id + chunk)
            entries = list(
                LedgerEntry.objects.filter(
                    id__gt=cursor.last_entry_id,
                    id__lte=upto,
                    kind=Kind.EXPIRE,
                    program_id__in={e.program_id for e in endpoints},
                ).select_related("member")
            )
            by_program: dict[int, list[Event]] = {}
            for e in entries:
                balance = {
                    name: getattr(e.member, name)
                    for name in ("available", "pending", "lifetime_earned", "redeemed", "expired")
                }
                event = Event(
                    type=EventType.POINTS_EXPIRED,
                    key=f"entry:{e.id}",
                    at=e.created_at,
                    data={
                        **_entry_data(e, external_id=e.member.external_id, balance=balance, redemption=None),
                        "entries": [_entry(e)],
                        "points": e.points,
                    },
                )
                by_program.setdefault(e.program_id, []).append(event)
            for program_id, events in by_program.items():
                mine = [ep for ep in endpoints if ep.program_id == program_id]
                written += len(services.deliveries_record(endpoints=mine, events=events))
            ExpiryScanCursor.objects.filter(pk=1).update(last_entry_id=upto, updated_at=timezone.now())
