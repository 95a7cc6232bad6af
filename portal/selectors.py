"""Reads of the customer portal's pages. Every page stays within 10 SQL statements whatever
the member's history (tests/portal/test_statement_counts.py)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db.models import Q
from django.utils.translation import gettext as _

from loyalty.models import Activity, LedgerEntry, Member
from loyalty.services import HELD_UNTIL
from rewards.models import Redemption
from tiers import selectors as tier_selectors

HISTORY_PAGE_SIZE = 20
CARD_CLAIM_REASON = re.compile(r"Card (\d+) claimed")
LOTS_SHOWN = 100  # a member with more open lots sees the soonest ones


@dataclass(frozen=True)
class Lot:
    points: int
    date: dt.datetime  # when pending points become available, or when points expire

    @property
    def held(self) -> bool:
        """Pending points held for a check (docs/fraud.md): no date to show."""
        return self.date >= HELD_UNTIL


@dataclass(frozen=True)
class HistoryLine:
    entry: LedgerEntry
    title: str
    detail: str = ""
    pending_until: dt.datetime | None = None

    @property
    def held(self) -> bool:
        return self.pending_until is not None and self.pending_until >= HELD_UNTIL

    @property
    def magnitude(self) -> int:
        return abs(self.entry.points)


@dataclass
class PointsPage:
    member: Member
    pending: list[Lot]
    expiring: list[Lot]  # within 90 days, soonest first
    expiring_30: int
    expiring_90: int
    history: list[HistoryLine]
    page: int
    has_older: bool
    tier: tier_selectors.TierProgress
    lots_cut: bool = False


def open_lots(*, member: Member, now: dt.datetime) -> tuple[list[Lot], list[Lot], bool]:
    """The member's pending lots (by the date they become available) and the lots expiring in
    the next 90 days (soonest first). 1 query on entry_open_lots (the member's lots with points
    left)."""
    horizon = now + dt.timedelta(days=90)
    rows = list(
        LedgerEntry.objects.filter(member_id=member.pk, remaining__gt=0, points__gt=0)
        .filter(Q(released_at__isnull=True) | Q(expires_at__gt=now, expires_at__lte=horizon))
        .order_by("expires_at", "id")
        .values_list("remaining", "released_at", "available_at", "expires_at")[: LOTS_SHOWN + 1]
    )
    cut = len(rows) > LOTS_SHOWN
    rows = rows[:LOTS_SHOWN]
    pending = sorted(
        (Lot(points=r, date=avail) for r, released, avail, _exp in rows if released is None),
        key=lambda lot: lot.date,
    )
    expiring = [Lot(points=r, date=exp) for r, _rel, _avail, exp in rows if exp is not None and now < exp <= horizon]
    return pending, expiring, cut


def _unless(reason: str, default: str) -> str:
    return "" if reason.strip().lower() == default.lower() else reason


def _describe(entry: LedgerEntry, redemptions: dict[str, Redemption]) -> tuple[str, str]:
    """A customer-facing title and detail for one ledger entry, in the active language. Staff
    adjustment reasons are internal notes: they are not shown (docs/portal.md)."""
    kinds = LedgerEntry.Kind
    activity: Activity | None = entry.activity
    activity_type = activity.type if activity is not None else ""
    order = (activity.order_id if activity is not None else "") or entry.reference
    if entry.kind == kinds.EARN:
        # The rule's name (the merchant's words) is the detail, unless it repeats the title.
        if activity_type == Activity.Type.PURCHASE:
            return _("Purchase, order %(order)s") % {"order": order}, _unless(entry.reason, "Purchase")
        if activity_type == Activity.Type.SIGNUP:
            return _("Welcome bonus"), _unless(entry.reason, "Welcome bonus")
        if activity_type == Activity.Type.BIRTHDAY:
            return _("Birthday bonus"), _unless(entry.reason, "Birthday bonus")
        if activity_type == Activity.Type.REFERRAL:
            return _("Referral bonus"), ""
        if entry.reference.startswith("automation:") or not entry.reason:
            return _("Bonus points"), ""
        return entry.reason, ""
    if entry.kind == kinds.REDEEM:
        redemption = redemptions.get(f"entry:{entry.pk}")
        if redemption is not None:
            return _("Reward: %(name)s") % {"name": redemption.reward.name}, _("Coupon %(code)s") % {
                "code": redemption.code
            }
        return _("Reward"), (_("Coupon %(code)s") % {"code": entry.reference}) if entry.reference else ""
    if entry.kind == kinds.REVERSAL:
        if activity_type == Activity.Type.REFUND:
            return _("Refund of order %(order)s") % {"order": order}, ""
        redemption = redemptions.get(f"code:{entry.reference}")
        if redemption is not None and entry.points > 0:
            return _("Reward cancelled: %(name)s") % {"name": redemption.reward.name}, _("Points given back")
        return (_("Points given back"), "") if entry.points > 0 else (_("Points taken back"), "")
    if entry.kind == kinds.EXPIRE:
        return _("Points expired"), ""
    if entry.kind == kinds.TRANSFER:
        claimed = CARD_CLAIM_REASON.fullmatch(entry.reason)
        if claimed is not None and entry.points > 0:
            # cards.services' claim of an anonymous card moves its points with this reason.
            return _("Points from your card ending in %(digits)s") % {"digits": claimed.group(1)[-4:]}, ""
        if entry.points > 0:
            return _("Points received from another member"), ""
        return _("Points given to another member"), ""
    # Adjustments by staff.
    return (_("Points added by our team"), "") if entry.points > 0 else (_("Points removed by our team"), "")


def history_page(*, member: Member, page: int) -> tuple[list[HistoryLine], bool]:
    """One page of the member's ledger, newest first, with readable reasons. Queries: 1 (the
    entries with their activity, on entry_member_recent) + 1 when the page holds redemptions
    or their cancellations (their coupons and rewards)."""
    offset = (page - 1) * HISTORY_PAGE_SIZE
    entries = list(
        LedgerEntry.objects.filter(member_id=member.pk)
        .select_related("activity")
        .order_by("-id")[offset : offset + HISTORY_PAGE_SIZE + 1]
    )
    has_older = len(entries) > HISTORY_PAGE_SIZE
    entries = entries[:HISTORY_PAGE_SIZE]
    redeem_ids = [e.pk for e in entries if e.kind == LedgerEntry.Kind.REDEEM]
    codes = [e.reference for e in entries if e.kind == LedgerEntry.Kind.REVERSAL and e.reference and e.points > 0]
    redemptions: dict[str, Redemption] = {}
    if redeem_ids or codes:
        for redemption in Redemption.objects.filter(
            Q(entry_id__in=redeem_ids) | Q(code__in=codes), member_id=member.pk
        ).select_related("reward"):
            if redemption.entry_id is not None:
                redemptions[f"entry:{redemption.entry_id}"] = redemption
            redemptions[f"code:{redemption.code}"] = redemption
    lines = []
    for entry in entries:
        title, detail = _describe(entry, redemptions)
        pending = entry.available_at if entry.points > 0 and entry.released_at is None else None
        lines.append(HistoryLine(entry=entry, title=title, detail=detail, pending_until=pending))
    return lines, has_older


def points_page(*, member: Member, page: int, now: dt.datetime) -> PointsPage:
    """Everything the "My points" page shows. Queries: 1 (lots) + 1-2 (history) + 3-4 (tier)."""
    pending, expiring, cut = open_lots(member=member, now=now)
    day30 = now + dt.timedelta(days=30)
    history, has_older = history_page(member=member, page=page)
    return PointsPage(
        member=member,
        pending=pending,
        expiring=expiring,
        expiring_30=sum(lot.points for lot in expiring if lot.date <= day30),
        expiring_90=sum(lot.points for lot in expiring),
        history=history,
        page=page,
        has_older=has_older,
        tier=tier_selectors.member_tier_progress(member=member, now=now),
        lots_cut=cut,
    )
