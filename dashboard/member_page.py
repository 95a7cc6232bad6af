"""What the member page shows (docs/back-office.md, "A member's page"): one function per
section, each a few indexed queries on the member's rows, whatever the size of their history.

Reads only: every write of the page goes through the apps' services (dashboard/views_member.py).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet, Sum

from cards.models import Card
from cards.selectors import member_cards
from loyalty.models import Activity, AdjustmentRequest, LedgerEntry, Member, MemberNote, Program, StaffAction
from loyalty.staff_scope import programs_for
from notifications.models import EmailMessage
from rewards.models import Redemption
from rewards.selectors import catalog_for_member
from tiers.selectors import TierProgress, member_tier_progress
from workflows.models import Referral

LEDGER_PAGE = 25
RECENT = 20
EXPIRING_DAYS = 30


def scoped_members(user: Any) -> QuerySet[Member]:
    """The members `user` may see: those of `programs_for(user)` (staff scoping)."""
    return Member.objects.filter(program__in=programs_for(user))


@dataclass
class Balances:
    available: int
    pending: int
    lifetime_earned: int
    redeemed: int
    expired: int
    debt: int
    expiring_soon: int
    next_expiry: dt.datetime | None


def balances(*, member: Member, now: dt.datetime) -> Balances:
    """The cached balances and what expires within 30 days (open lots: index entry_open_lots)."""
    soon = LedgerEntry.objects.filter(
        member=member, remaining__gt=0, expires_at__gt=now, expires_at__lte=now + dt.timedelta(days=EXPIRING_DAYS)
    ).aggregate(points=Sum("remaining"))
    next_lot = (
        LedgerEntry.objects.filter(member=member, remaining__gt=0, expires_at__gt=now)
        .order_by("expires_at")
        .values_list("expires_at", flat=True)
        .first()
    )
    return Balances(
        available=member.available,
        pending=member.pending,
        lifetime_earned=member.lifetime_earned,
        redeemed=member.redeemed,
        expired=member.expired,
        debt=member.debt,
        expiring_soon=int(soon["points"] or 0),
        next_expiry=next_lot,
    )


@dataclass
class OrderRow:
    activity: Activity
    points: int  # points the activity earned (all its lots)
    refunded_amount: Any = 0
    refunded_points: int = 0
    refunds: list[Activity] = field(default_factory=list)

    @property
    def refundable(self) -> Any:
        if self.activity.type != Activity.Type.PURCHASE or self.activity.amount is None:
            return 0
        return self.activity.amount - self.refunded_amount


def activities(*, member: Member, limit: int = RECENT) -> list[OrderRow]:
    """The member's latest activities (purchases and others, index activity_member_recent) with
    the points each earned, and each purchase's refunds with the points they took back.
    Queries: 3."""
    recent = list(
        Activity.objects.filter(member=member).exclude(type=Activity.Type.REFUND).order_by("-occurred_at")[:limit]
    )
    ids = [a.pk for a in recent]
    earned = dict(
        LedgerEntry.objects.filter(activity_id__in=ids, kind=LedgerEntry.Kind.EARN)
        .values("activity_id")
        .annotate(points=Sum("points"))
        .values_list("activity_id", "points")
    )
    orders = [a.order_id for a in recent if a.type == Activity.Type.PURCHASE and a.order_id]
    refunds: dict[str, list[Activity]] = defaultdict(list)
    taken: dict[int, int] = {}
    if orders:
        refund_rows = list(
            Activity.objects.filter(
                program_id=member.program_id, type=Activity.Type.REFUND, order_id__in=orders
            ).order_by("occurred_at")
        )
        for refund in refund_rows:
            refunds[refund.order_id].append(refund)
        taken = dict(
            LedgerEntry.objects.filter(activity_id__in=[r.pk for r in refund_rows], kind=LedgerEntry.Kind.REVERSAL)
            .values("activity_id")
            .annotate(points=Sum("points"))
            .values_list("activity_id", "points")
        )
    rows = []
    for activity in recent:
        mine = refunds.get(activity.order_id, []) if activity.type == Activity.Type.PURCHASE else []
        rows.append(
            OrderRow(
                activity=activity,
                points=int(earned.get(activity.pk, 0)),
                refunded_amount=sum((r.amount or 0 for r in mine), 0),
                refunded_points=-sum(int(taken.get(r.pk, 0)) for r in mine),
                refunds=mine,
            )
        )
    return rows


@dataclass
class LedgerPage:
    entries: list[LedgerEntry]
    next_before: int | None  # the `before` of the next (older) page; None: this is the last


def ledger_page(
    *,
    member: Member,
    kind: str = "",
    since: dt.date | None = None,
    until: dt.date | None = None,
    before: int | None = None,
    size: int = LEDGER_PAGE,
) -> LedgerPage:
    """A page of the member's ledger, newest first, filtered by kind and by day (in the
    program's time zone), paged by keyset on the entry id (`before`): each page reads the
    index entry_member_recent (member, -id) from where the previous one stopped, so the 4,000th
    page of a member with 100,000 entries costs what the first does. Queries: 1."""
    program: Program = member.program
    entries = LedgerEntry.objects.filter(member=member)
    if kind:
        entries = entries.filter(kind=kind)
    if since:
        entries = entries.filter(created_at__gte=program.start_of_day(since))
    if until:
        entries = entries.filter(created_at__lt=program.start_of_day(until + dt.timedelta(days=1)))
    if before:
        entries = entries.filter(id__lt=before)
    rows = list(entries.select_related("created_by").order_by("-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return LedgerPage(entries=rows, next_before=rows[-1].pk if more and rows else None)


def cards(*, member: Member) -> list[Card]:
    return list(member_cards(member=member).select_related("replaced_by"))


def coupons(*, member: Member, limit: int = RECENT) -> list[Redemption]:
    """The member's latest coupons (index redemption_member_reward), newest first."""
    return list(Redemption.objects.filter(member=member).select_related("reward").order_by("-id")[:limit])


def messages(*, member: Member, limit: int = RECENT) -> list[EmailMessage]:
    """The member's latest emails with their status (index email_message_member)."""
    return list(EmailMessage.objects.filter(member=member).order_by("-id")[:limit])


def coupon_messages(*, coupons: list[Redemption]) -> dict[int, list[int]]:
    """The emails of each coupon (source "redemption:<id>"): what "resend" sends again."""
    sources = {f"redemption:{c.pk}": c.pk for c in coupons}
    if not sources:
        return {}
    found: dict[int, list[int]] = defaultdict(list)
    member_ids = {c.member_id for c in coupons}
    rows = EmailMessage.objects.filter(member_id__in=member_ids, source__in=list(sources)).values_list("source", "id")
    for source, message_id in rows:
        found[sources[source]].append(message_id)
    return found


@dataclass
class Referrals:
    referred_by: Referral | None
    made: list[Referral]


def referrals(*, member: Member, limit: int = RECENT) -> Referrals:
    return Referrals(
        referred_by=Referral.objects.filter(friend=member).select_related("referrer").first(),
        made=list(Referral.objects.filter(referrer=member).select_related("friend").order_by("-created_at")[:limit]),
    )


def notes(*, member: Member, limit: int = RECENT) -> list[MemberNote]:
    return list(MemberNote.objects.filter(member=member).select_related("author").order_by("-id")[:limit])


@dataclass
class AuditRow:
    action: StaffAction
    summary: str


def audit(*, member: Member, limit: int = 30) -> list[AuditRow]:
    """The member's latest staff actions, each with its facts in words."""
    rows = StaffAction.objects.filter(member=member).select_related("actor").order_by("-id")[:limit]
    return [AuditRow(action=row, summary=describe(row, member.program.points_name)) for row in rows]


def _signed(value: Any) -> str:
    return f"{int(value):+d}" if isinstance(value, int) else str(value)


def describe(action: StaffAction, points_name: str) -> str:
    """A staff action's `details` as a sentence a manager reads (the raw facts otherwise)."""
    d: dict[str, Any] = action.details or {}
    kind = action.action
    A = StaffAction.Action
    try:
        if kind == A.ADJUST:
            confirmed = " (confirmed)" if d.get("confirmed") else ""
            return f"{_signed(d['points'])} {points_name}{confirmed}; balance after: {d['available_after']}"
        if kind == A.ADJUST_REQUESTED:
            return f"{_signed(d['points'])} {points_name} asked (request {d['request']}). {d.get('why', '')}".strip()
        if kind == A.ADJUST_APPROVED:
            return (
                f"{_signed(d['points'])} {points_name} posted (request {d['request']} of {d['requested_by']}); "
                f"balance after: {d['available_after']}"
            )
        if kind == A.ADJUST_REJECTED:
            return f"{_signed(d['points'])} {points_name} not posted (request {d['request']}: “{d['asked_reason']}”)"
        if kind == A.TRANSFER:
            way = "to" if d["points"] < 0 else "from"
            return f"{_signed(d['points'])} {points_name} {way} member #{d['other_member']}"
        if kind == A.CARD_REPLACE:
            return f"card {d['old_card']} replaced by {d['new_card']}"
        if kind == A.REDEEM:
            return f"{d['reward']}: coupon {d['coupon']}" + (f" ({d['points']} {points_name})" if "points" in d else "")
        if kind == A.COUPON_USE:
            return f"coupon {d['coupon']} on order {d['order_id']}"
        if kind == A.COUPON_CANCEL:
            return f"coupon {d['coupon']}"
        if kind == A.EMAIL_RESEND:
            return f"{len(d['messages'])} email(s) queued again"
        if kind == A.REFUND:
            taken = f", {-int(d['points'])} {points_name} taken back" if d.get("points") else ""
            return f"order {d['order_id']}: {d['amount']} refunded{taken}"
        if kind == A.NOTE:
            return f"“{d.get('text', '')}”"
        if kind in (A.BLOCK, A.UNBLOCK):
            return ""
    except (KeyError, TypeError, ValueError):
        pass
    return " · ".join(f"{key}: {value}" for key, value in d.items())


def adjustment_requests(*, member: Member, limit: int = 10) -> list[AdjustmentRequest]:
    return list(
        AdjustmentRequest.objects.filter(member=member)
        .select_related("requested_by", "decided_by")
        .order_by("-id")[:limit]
    )


def tier(*, member: Member, now: dt.datetime) -> TierProgress:
    return member_tier_progress(member=member, now=now)


def rewards(*, member: Member, now: dt.datetime) -> list[tuple[Any, Any]]:
    return catalog_for_member(program=member.program, member=member, now=now)
