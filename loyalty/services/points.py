"""The point use cases: earn, adjust, redeem, restore a redemption, reverse an order, transfer,
and bulk credits (opening balances). Each checks its input, raising a domain error before
anything is written, then posts through `loyalty.services.posting`; none touches the ledger's
tables itself.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.utils import timezone

from loyalty import errors
from loyalty.models import Activity, LedgerEntry, Member, Program

from .checks import check_aware, check_points
from .posting import PostResult, _Posting, credits_post_bulk, points_post

Kind = LedgerEntry.Kind


@dataclass(frozen=True)
class EarnAward:
    """One lot of an earn posting: its points and what the member reads about it."""

    points: int
    reason: str = ""
    reference: str = ""


def points_earn(
    *,
    program: Program,
    member_id: int,
    points: int,
    reason: str = "",
    reference: str = "",
    activity: Activity | None = None,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
    context: dict[str, Any] | None = None,
) -> PostResult:
    """Credit earned points as one lot dated by `occurred_at` (the activity's, if given):
    pending for the program's pending days, expiring after its expiry days. Refused for a
    blocked member. `context`: facts for the in-transaction receivers (`points_post`)."""
    payload = {
        "member": member_id,
        "points": points,
        "reason": reason,
        "reference": reference,
        "activity": activity.id if activity else None,
        "occurred_at": occurred_at,
    }
    return _earn(
        program=program,
        member_id=member_id,
        awards=[EarnAward(points=points, reason=reason, reference=reference)],
        activity=activity,
        occurred_at=occurred_at,
        operation="earn",
        payload=payload,
        idempotency_key=idempotency_key,
        now=now,
        context=context,
    )


def points_earn_many(
    *,
    program: Program,
    member_id: int,
    awards: Sequence[EarnAward],
    activity: Activity | None = None,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    operation: str = "earn_many",
    request_hash: str | None = None,
    result: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
    context: dict[str, Any] | None = None,
    available_at: dt.datetime | None = None,
) -> PostResult:
    """Credit several earned lots of one member in ONE posting (the awards of one activity):
    one member lock, one statement when the member is active and owes nothing, one
    `points_posted` announcement carrying all the entries. Each award is a lot dated by
    `occurred_at` (the activity's, if given) with its own reason and reference, like
    `points_earn`. Refused for a blocked member. `request_hash` (optional) replaces the hash
    of the awards for the idempotency key, and `result` is stored with the key: a caller
    whose request is more than its awards (an activity) keys the posting by its own request.
    `available_at` replaces the lots' availability date (default: the program's pending days
    after `occurred_at`): a backdated activity's or a held activity's (docs/fraud.md)."""
    if not awards:
        raise errors.InvalidInput("An earn posting needs at least one award.", field="awards")
    payload = {
        "member": member_id,
        "awards": [[a.points, a.reason, a.reference] for a in awards],
        "activity": activity.id if activity else None,
        "occurred_at": occurred_at,
    }
    return _earn(
        program=program,
        member_id=member_id,
        awards=awards,
        activity=activity,
        occurred_at=occurred_at,
        operation=operation,
        payload=payload,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        result=result,
        now=now,
        context=context,
        available_at=available_at,
    )


def _earn(
    *,
    program: Program,
    member_id: int,
    awards: Sequence[EarnAward],
    activity: Activity | None,
    occurred_at: dt.datetime | None,
    operation: str,
    payload: dict[str, Any],
    idempotency_key: str | None,
    now: dt.datetime | None,
    request_hash: str | None = None,
    result: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    available_at: dt.datetime | None = None,
) -> PostResult:
    for award in awards:
        check_points(award.points)
    now = now or timezone.now()
    occurred_at = occurred_at or (activity.occurred_at if activity else now)
    check_aware(occurred_at, "occurred_at")
    if activity is not None and activity.member_id != member_id:
        raise errors.InvalidInput("The activity belongs to another member.", field="activity")
    available_at = available_at or program.availability_for(occurred_at)
    expires_at = program.expiry_for(occurred_at)
    lots = [
        {
            "member_id": member_id,
            "kind": Kind.EARN,
            "points": award.points,
            "occurred_at": occurred_at,
            "available_at": available_at,
            "expires_at": expires_at,
            "reason": award.reason,
            "reference": award.reference,
            "activity_id": activity.id if activity else None,
        }
        for award in awards
    ]

    def work(p: _Posting) -> None:
        p.require_active(member_id)
        for lot in lots:
            p.credit(member_id, **{k: v for k, v in lot.items() if k != "member_id"})

    return points_post(
        program=program,
        member_ids=[member_id],
        operation=operation,
        payload=payload,
        request_hash=request_hash,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
        simple_credits=lots,
        result=result,
        context=context,
    )


def points_adjust(
    *,
    program: Program,
    member_id: int,
    points: int,
    reason: str,
    actor: Any = None,
    source: str = "",
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
    notify_member: bool = False,
) -> PostResult:
    """A staff correction, signed. A credit is a lot (expiring as if earned now); a debit
    spends available then pending points and may leave a debt. Works on blocked members.
    Who made it: `actor` (a staff user, kept as `created_by`) or, for an integration,
    `source` (e.g. "api-key:ab12cd (POS)", kept as the entry's reference). `notify_member`:
    staff ticked "tell the member" (the in-transaction receivers get it in `context`, with the
    reason; the notifications app queues the points_added / points_removed email). It is not
    part of the idempotency payload: a retry replays the first posting whatever the box says."""
    check_points(points, allow_negative=True)
    if not (reason or "").strip():
        raise errors.ReasonRequired("An adjustment needs a reason.", field="reason")
    has_actor = actor is not None and getattr(actor, "pk", None)
    if not has_actor and not (source or "").strip():
        raise errors.InvalidInput("An adjustment needs the acting staff user or its source.", field="actor")
    now = now or timezone.now()

    def work(p: _Posting) -> None:
        if points > 0:
            p.credit(
                member_id,
                kind=Kind.ADJUST,
                points=points,
                occurred_at=now,
                expires_at=program.expiry_for(now),
                reason=reason,
                reference=source[:255],
            )
        else:
            p.settle(member_id)
            p.debit(
                member_id,
                kind=Kind.ADJUST,
                points=-points,
                allow_debt=True,
                include_pending=True,
                reason=reason,
                reference=source[:255],
            )

    payload = {"member": member_id, "points": points, "reason": reason, "actor": actor.pk if has_actor else None}
    if source:
        payload["source"] = source
    return points_post(
        program=program,
        member_ids=[member_id],
        operation="adjust",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
        actor_id=actor.pk if has_actor else None,
        context={"notify_member": True, "reason": reason} if notify_member else None,
    )


def points_redeem(
    *,
    program: Program,
    member_id: int,
    points: int,
    reason: str = "",
    reference: str = "",
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
    join_caller: bool = False,
    locked_member: Member | None = None,
) -> PostResult:
    """Spend available points, first-expiring first. Never leaves the member below zero:
    `InsufficientPoints` when short (pending and expired points don't count);
    `BelowMinimumRedemption` under the program's minimum redemption. `join_caller` and
    `locked_member` (the member's row the caller locked and read): see `points_post`."""
    check_points(points)
    if points < program.min_redemption:
        raise errors.BelowMinimumRedemption(
            f"A redemption spends at least {program.min_redemption} points.",
            points=points,
            minimum=program.min_redemption,
        )

    def work(p: _Posting) -> None:
        p.require_active(member_id)
        p.settle(member_id)
        p.debit(
            member_id,
            kind=Kind.REDEEM,
            points=points,
            allow_debt=False,
            include_pending=False,
            reason=reason,
            reference=reference,
        )

    payload = {"member": member_id, "points": points, "reason": reason, "reference": reference}
    return points_post(
        program=program,
        member_ids=[member_id],
        operation="redeem",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
        join_caller=join_caller,
        locked_member=locked_member,
    )


def points_restore(
    *,
    program: Program,
    entry_id: int,
    reason: str = "",
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """Give back the points of a redemption (a cancelled coupon) as lots with the expiry
    dates of the lots it consumed. A redemption is given back once (`AlreadyReversed`)."""
    entry = LedgerEntry.objects.filter(id=entry_id, program=program, kind=Kind.REDEEM).first()
    if entry is None:
        raise errors.EntryNotFound(f"No redemption entry {entry_id} in this program.", entry_id=entry_id)

    def work(p: _Posting) -> None:
        if p.was_given_back(entry.id):
            raise errors.AlreadyReversed(f"Redemption {entry.id} was already given back.", entry_id=entry.id)
        for expires_at, pts in p.consumed_by_expiry(entry.id):
            p.credit(
                entry.member_id,
                kind=Kind.REVERSAL,
                points=int(pts),
                occurred_at=p.now,
                expires_at=expires_at,
                reason=reason or f"Redemption {entry.id} cancelled",
                reference=entry.reference,
                source_entry_id=entry.id,
            )

    payload = {"entry": entry_id, "reason": reason}
    return points_post(
        program=program,
        member_ids=[entry.member_id],
        operation="restore",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
    )


def points_reverse_order(
    *,
    program: Program,
    order_id: str,
    amount: Decimal,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """Refund `amount` of an order: record a refund activity and take back the order's
    points in proportion (cumulative, so partial refunds add up to exactly the order's points
    at a full refund). Takes the order's own lots first, then other points; what is missing
    (the points were spent) becomes a debt. `RefundExceedsOrder` past the order's amount."""
    try:
        amount = Decimal(amount)
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise errors.InvalidInput("The refund amount must be a decimal number.", field="amount") from exc
    if not amount.is_finite() or amount <= 0:
        raise errors.InvalidInput("The refund amount must be positive.", field="amount")
    now = now or timezone.now()
    payload = {"order": order_id, "amount": amount, "occurred_at": occurred_at}
    occurred_at = occurred_at or now
    check_aware(occurred_at, "occurred_at")
    purchase = Activity.objects.filter(program=program, type=Activity.Type.PURCHASE, order_id=order_id).first()
    if purchase is None:
        raise errors.OrderNotFound(f"No purchase with order id {order_id!r}.", order_id=order_id)
    order_amount = purchase.amount or Decimal(0)

    def work(p: _Posting) -> None:
        refunded_before, earned, reversed_before = p.order_refund_state(order_id=order_id, purchase_id=purchase.id)
        if refunded_before + amount > order_amount:
            raise errors.RefundExceedsOrder(
                f"Refunds of order {order_id} would total {refunded_before + amount}, more than its {order_amount}.",
                order_id=order_id,
                order_amount=str(order_amount),
                refunded=str(refunded_before),
                requested=str(amount),
            )
        refund = Activity.objects.create(
            program=program,
            member_id=purchase.member_id,
            type=Activity.Type.REFUND,
            occurred_at=occurred_at,
            reported_at=now,
            order_id=order_id,
            amount=amount,
            currency=purchase.currency,
            channel=purchase.channel,
        )
        share = (refunded_before + amount) / order_amount if order_amount else Decimal(1)
        target = int((Decimal(earned) * share).to_integral_value(rounding=ROUND_FLOOR))
        points = min(target, earned) - reversed_before
        if points > 0:
            p.settle(purchase.member_id)
            p.debit(
                purchase.member_id,
                kind=Kind.REVERSAL,
                points=points,
                allow_debt=True,
                include_pending=True,
                first_lots_of_activity=purchase.id,
                reason=f"Refund of order {order_id}",
                reference=order_id,
                activity_id=refund.id,
            )

    return points_post(
        program=program,
        member_ids=[purchase.member_id],
        operation="reverse",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
    )


def points_transfer(
    *,
    program: Program,
    from_member_id: int,
    to_member_id: int,
    points: int,
    reason: str = "",
    actor: Any = None,
    include_pending: bool = False,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """Move available points to another member of the program. The receiver's lots keep the
    expiry dates of the sender's lots. Never takes the sender below zero.

    `include_pending` also moves points still in their return window (after the available
    ones); they stay pending on the receiver until their original date (merging an
    anonymous card member into a customer's account)."""
    check_points(points)
    if from_member_id == to_member_id:
        raise errors.InvalidInput("A transfer needs two different members.", field="to")
    transfer_ref = f"transfer:{secrets.token_hex(8)}"

    def work(p: _Posting) -> None:
        p.require_active(from_member_id)
        p.require_active(to_member_id)
        p.settle(from_member_id)
        debit, takes = p.debit(
            from_member_id,
            kind=Kind.TRANSFER,
            points=points,
            allow_debt=False,
            include_pending=include_pending,
            reason=reason or f"Transfer to member {to_member_id}",
            reference=transfer_ref,
        )
        # One receiving lot per (expiry, pending date) of the consumed lots.
        groups: dict[tuple[dt.datetime | None, dt.datetime | None], int] = {}
        for _lot, take, expires_at, pending_until in takes:
            groups[(expires_at, pending_until)] = groups.get((expires_at, pending_until), 0) + take
        for (expires_at, pending_until), pts in groups.items():
            p.credit(
                to_member_id,
                kind=Kind.TRANSFER,
                points=pts,
                occurred_at=p.now,
                available_at=pending_until,
                expires_at=expires_at,
                reason=reason or f"Transfer from member {from_member_id}",
                reference=transfer_ref,
                source_entry_id=debit.id,
            )

    actor_id = getattr(actor, "pk", None)
    payload = {
        "from": from_member_id,
        "to": to_member_id,
        "points": points,
        "reason": reason,
        "actor": actor_id,
        "pending": include_pending,
    }
    return points_post(
        program=program,
        member_ids=[from_member_id, to_member_id],
        operation="transfer",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
        actor_id=actor_id,
    )


def points_credit_bulk(
    *,
    program: Program,
    credits: Sequence[tuple[int, int]],
    reason: str,
    actor: Any,
    now: dt.datetime | None = None,
    kind: str = "adjust",
) -> int:
    """Credit many members at once, one staff-adjustment lot each (opening balances of an
    import); with `kind="earn"` the lots are earn entries instead (they count as earned:
    `lifetime_earned` and the tier metric). Set-based: members locked in id order, lots
    inserted and balances raised with one statement each. Members who owe points go through
    `points_adjust` (their debt is paid first); an earn-kind credit refuses them. Joins the
    caller's transaction, so an import stays all-or-nothing.
    Returns the number of lots written. Queries: 2 + 1 per indebted member."""
    if not (reason or "").strip():
        raise errors.ReasonRequired("Bulk credits need a reason.", field="reason")
    if actor is None or not getattr(actor, "pk", None):
        raise errors.InvalidInput("Bulk credits need the acting staff user.", field="actor")
    for _member_id, points in credits:
        check_points(points)
    member_ids = [c[0] for c in credits]
    if len(set(member_ids)) != len(member_ids):
        raise errors.InvalidInput("A member appears twice in one bulk credit.", field="credits")
    if not credits:
        return 0
    if kind not in ("adjust", "earn"):
        raise errors.InvalidInput("A bulk credit is an adjust or an earn.", field="kind")
    now = now or timezone.now()
    _written, indebted = credits_post_bulk(
        program=program, credits=credits, reason=reason, actor_id=actor.pk, now=now, kind=kind
    )
    for member_id, points in credits:
        if member_id in indebted:
            points_adjust(program=program, member_id=member_id, points=points, reason=reason, actor=actor, now=now)
    return len(credits)
