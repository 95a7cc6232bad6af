"""Writes of the rewards app: the catalog, redeeming a reward for a coupon, using, cancelling
and expiring coupons. Points move only through `loyalty.services` (rule 1)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from loyalty import errors
from loyalty import services as ledger
from loyalty.inserts import insert_unless_conflict
from loyalty.models import Member, Program
from loyalty.services import BALANCE_FIELDS, Balance
from loyalty.services.transactions import atomic_or_join

from . import codes, lock_objects, selectors, signals
from .errors import CouponAlreadyUsed, CouponNotFound, CouponNotUsable, RewardNotFound, RewardUnavailable
from .models import Redemption, Reward, RewardSettings

CODE_ATTEMPTS = 5


@dataclass
class RedeemResult:
    redemption: Redemption
    balance: Balance
    replayed: bool = False


def _balance_of(member_id: int) -> Balance:
    return Balance.of(Member.objects.only(*BALANCE_FIELDS).get(pk=member_id))


def reward_create(*, program: Program, name: str, kind: str, **fields: Any) -> Reward:
    """Add a reward to a program's catalog (the admin's form does the same through the model)."""
    reward = Reward(program=program, name=name, kind=kind, **fields)
    try:
        reward.full_clean()
    except ValidationError as exc:
        raise errors.InvalidInput("Invalid reward.", fields=exc.message_dict) from exc
    reward.save()
    return reward


def _points_to_spend(reward: Reward, points: int | None) -> int:
    """The fixed cost, or the member's choice for points as money off (in steps, within bounds)."""
    if not reward.is_points_for_amount:
        if points is not None and points != reward.cost_points:
            raise errors.InvalidInput(
                f"This reward costs {reward.cost_points} points; only points-as-money-off rewards take a choice.",
                field="points",
            )
        return int(reward.cost_points or 0)
    step, low, high = reward.points_step or 1, reward.points_min or 0, reward.points_max
    chosen = low if points is None else points
    if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen <= 0:
        raise errors.InvalidInput("Points must be a positive whole number.", field="points")
    if chosen < low or (high is not None and chosen > high) or chosen % step:
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise errors.InvalidInput(
            f"Choose a multiple of {step} points {bound}.", field="points", step=step, minimum=low, maximum=high
        )
    return chosen


def _value_for(reward: Reward, points: int) -> Decimal | None:
    if reward.is_points_for_amount:
        return (Decimal(points) * (reward.value or Decimal(0))).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
    return reward.value


def gift_points(reward: Reward) -> int:
    """The points a gift of a points-as-money-off reward is worth (docs/rewards.md): the
    reward's minimum, or one step when the minimum is 0. Other kinds have a fixed value."""
    return int(reward.points_min or reward.points_step or 0)


def _gift_value(reward: Reward) -> Decimal | None:
    if reward.is_points_for_amount:
        return _value_for(reward, gift_points(reward))
    return reward.value


def _coupon_expiry(program: Program, reward: Reward, now: dt.datetime) -> dt.datetime | None:
    """Valid through the local day `valid_days` after the day of issue."""
    if reward.valid_days is None:
        return None
    return program.start_of_day(program.local_date(now) + dt.timedelta(days=reward.valid_days + 1))


def _take_stock(reward: Reward) -> bool:
    """One unit of the reward's stock, atomically (the row lock of the UPDATE serialises
    concurrent redemptions of the last unit). False when none is left."""
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {Reward._meta.db_table} SET issued_count = issued_count + 1 "
            "WHERE id = %s AND stock IS NOT NULL AND issued_count < stock RETURNING issued_count",
            [reward.pk],
        )
        return cur.fetchone() is not None


def _give_back_stock(redemption: Redemption) -> None:
    if redemption.counts_against_stock:
        Reward.objects.filter(pk=redemption.reward_id, issued_count__gt=0).update(issued_count=F("issued_count") - 1)


def reward_redeem(
    *,
    program: Program,
    member: Member,
    reward: Reward,
    points: int | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
    join_caller: bool = False,
) -> RedeemResult:
    """Spend the member's points on a reward (first-expiring points first) and issue a coupon.

    Checks, with the member row locked: the reward is this program's, active, in its window,
    for the member's tier, under the member's limit and in stock; the points (fixed cost, or
    the member's choice for points as money off) are available and above the program's minimum
    redemption. Any refusal leaves nothing written. With `idempotency_key`, a retry returns the
    first coupon. Sends `reward_redeemed_in_transaction` after the writes and `reward_redeemed`
    after commit.

    `join_caller` (the API): the caller holds the transaction open, has read `reward` in it,
    and rolls the whole transaction back on any exception raised through this call; then no
    savepoint (here or in the posting) and no second read of the reward. Otherwise the work
    runs in its own `atomic()` block, which the posting joins: any refusal, even one found
    after a write (out of stock, a code or key taken meanwhile), undoes all of it."""
    now = now or timezone.now()
    payload = {"member": member.pk, "reward": reward.pk, "points": points}
    with atomic_or_join(join=join_caller):
        # One statement: the member's lock and whether the key was used before. The key itself
        # is recorded last, with the coupon's id (no claim-then-settle).
        locked = lock_objects.member_for_update_seeing_key(member_id=member.pk, program=program, key=idempotency_key)
        if idempotency_key is not None and locked is not None and locked.key_seen:
            record = ledger.idempotency_key_claim(
                program=program, key=idempotency_key, operation="reward_redeem", payload=payload, now=now
            )
            assert record is not None  # the key exists: a replay (or a conflict, raised)
            redemption = Redemption.objects.select_related("reward").get(pk=record.result["redemption_id"])
            return RedeemResult(redemption=redemption, balance=_balance_of(member.pk), replayed=True)
        if locked is None or locked.program_id != program.id:
            raise errors.MemberNotFound("No such member in this program.", member_id=member.pk)
        if locked.is_blocked:
            raise errors.MemberBlocked("The member is blocked.", member_id=member.pk)
        if reward.program_id != program.id:
            raise RewardNotFound("No such reward in this program.", reward_id=reward.pk)
        if not join_caller:
            reward.refresh_from_db()
        spend = _points_to_spend(reward, points)
        problem = selectors.reward_refusal(reward=reward, member=locked, now=now)
        if problem is not None:
            raise RewardUnavailable(problem.message, reason=problem.reason, reward_id=reward.pk)
        counts_against_stock = reward.stock is not None
        # A fresh code without a look-up first: the insert refuses a taken code (one chance in
        # about 4 * 10**6 at a billion coupons, rewards/codes.py) and the redemption is then a
        # Conflict to retry, nothing written.
        code = codes.new_code()
        posted = ledger.points_redeem(
            program=program,
            member_id=locked.pk,
            points=spend,
            reason=f"Reward: {reward.name}"[:255],
            reference=code,
            now=now,
            join_caller=True,  # this block rolls back whole on any exception raised through it
            locked_member=locked,  # locked and read above, in this transaction: no second lock
        )
        redemption = Redemption(
            program=program,
            reward=reward,
            member=locked,
            code=code,
            points=spend,
            kind=reward.kind,
            value=_value_for(reward, spend),
            sku=reward.sku,
            entry=posted.entries[0],
            counts_against_stock=counts_against_stock,
            issued_at=now,
            expires_at=_coupon_expiry(program, reward, now),
        )
        if not insert_unless_conflict(redemption):
            raise errors.Conflict("A coupon code collided; please retry the redemption.")
        # The unit of stock last: the reward's row stays locked (it serialises the redemptions of
        # that reward) only from here to the commit. None left: everything above rolls back.
        if counts_against_stock and not _take_stock(reward):
            raise RewardUnavailable("This reward is out of stock.", reason="out_of_stock", reward_id=reward.pk)
        if idempotency_key is not None:
            record = ledger.idempotency_key_claim(
                program=program,
                key=idempotency_key,
                operation="reward_redeem",
                payload=payload,
                result={"redemption_id": redemption.pk},
                now=now,
            )
            if record is not None:  # a concurrent first attempt committed meanwhile
                raise errors.IdempotencyConflict(
                    "This idempotency key is being used by another request.", idempotency_key=idempotency_key
                )
        if signals.reward_redeemed_in_transaction.has_listeners(Redemption):
            signals.reward_redeemed_in_transaction.send(
                sender=Redemption, program=program, redemption=redemption, member_id=locked.pk
            )
        transaction.on_commit(
            lambda: signals.reward_redeemed.send(
                sender=Redemption, program=program, redemption=redemption, member_id=locked.pk
            )
        )
    return RedeemResult(redemption=redemption, balance=posted.balance)


def _fresh_code() -> str:
    """A code no coupon has (drawn again on the rare hit; the unique index settles a race)."""
    code = codes.new_code()
    for _ in range(CODE_ATTEMPTS):
        if not Redemption.objects.filter(code=code).exists():
            break
        code = codes.new_code()
    return code


def _coupon(program: Program, code: str) -> Redemption:
    normal = codes.normalize(code)
    redemption = lock_objects.redemption_for_update(program_id=program.id, code=normal).first() if normal else None
    if redemption is None:
        raise CouponNotFound("No such coupon in this program.", code=code)
    return redemption


def redemption_use(*, program: Program, code: str, order_id: str, now: dt.datetime | None = None) -> Redemption:
    """The shop applied the coupon to `order_id`. Using it twice: `CouponAlreadyUsed` (409);
    cancelled or expired (also past its expiry date before the job ran): `CouponNotUsable`."""
    now = now or timezone.now()
    order_id = (order_id or "").strip()
    if not order_id:
        raise errors.InvalidInput("The order id is required.", field="order_id")
    with transaction.atomic():
        redemption = _coupon(program, code)
        if redemption.status == Redemption.Status.USED:
            raise CouponAlreadyUsed("This coupon was already used.", code=redemption.code, order_id=redemption.order_id)
        expired = redemption.expires_at is not None and redemption.expires_at <= now
        if redemption.status != Redemption.Status.ISSUED or expired:
            status = Redemption.Status.EXPIRED if expired else redemption.status
            raise CouponNotUsable(f"This coupon is {status}.", code=redemption.code, status=status)
        redemption.status = Redemption.Status.USED
        redemption.used_at = now
        redemption.order_id = order_id[:255]
        redemption.save(update_fields=["status", "used_at", "order_id"])
        transaction.on_commit(
            lambda: signals.redemption_used.send(sender=Redemption, program=program, redemption=redemption)
        )
    return redemption


def redemption_cancel(*, program: Program, code: str, reason: str = "", now: dt.datetime | None = None) -> Redemption:
    """Cancel an unused coupon: its points come back with their original expiry dates and its
    unit of stock is free again. Used: `CouponAlreadyUsed`; cancelled or expired:
    `CouponNotUsable`."""
    now = now or timezone.now()
    with transaction.atomic():
        redemption = _coupon(program, code)
        if redemption.status == Redemption.Status.USED:
            raise CouponAlreadyUsed("A used coupon cannot be cancelled.", code=redemption.code)
        if redemption.status != Redemption.Status.ISSUED:
            raise CouponNotUsable(
                f"This coupon is {redemption.status}.", code=redemption.code, status=redemption.status
            )
        redemption.status = Redemption.Status.CANCELLED
        redemption.cancelled_at = now
        if redemption.entry_id is not None:  # a gift cost no points
            result = ledger.points_restore(
                program=program,
                entry_id=redemption.entry_id,
                reason=(reason or f"Coupon {redemption.code} cancelled")[:255],
                now=now,
            )
            redemption.refund_entry = result.entries[0] if result.entries else None
        redemption.save(update_fields=["status", "cancelled_at", "refund_entry"])
        _give_back_stock(redemption)
        transaction.on_commit(
            lambda: signals.redemption_cancelled.send(
                sender=Redemption, program=program, redemption=redemption, refunded=True
            )
        )
    return redemption


@dataclass
class ExpireResult:
    coupons: int = 0
    refunded: int = 0
    points: int = 0


def coupons_expire(*, now: dt.datetime, chunk_size: int = 500) -> ExpireResult:
    """Expire issued coupons past their expiry date, in chunks of one transaction each
    (coupons locked in id order). Their points come back (original expiry dates) when the
    program's coupon policy says so; their stock is freed. Idempotent: a rerun finds nothing."""
    result = ExpireResult()
    refund_policy = dict(RewardSettings.objects.values_list("program_id", "refund_expired_coupons"))
    programs: dict[int, Program] = {}
    last_id = 0
    while True:
        with transaction.atomic(durable=True):
            batch = list(
                Redemption.objects.select_for_update()
                .filter(status=Redemption.Status.ISSUED, expires_at__lte=now, id__gt=last_id)
                .order_by("id")[:chunk_size]
            )
            if not batch:
                return result
            for redemption in batch:
                program = programs.get(redemption.program_id)
                if program is None:
                    program = programs[redemption.program_id] = Program.objects.get(pk=redemption.program_id)
                refund = refund_policy.get(program.id, True) and redemption.entry_id is not None
                redemption.status = Redemption.Status.EXPIRED
                redemption.expired_at = now
                if refund:
                    posted = ledger.points_restore(
                        program=program,
                        entry_id=redemption.entry_id,
                        reason=f"Coupon {redemption.code} expired unused",
                        now=now,
                    )
                    redemption.refund_entry = posted.entries[0] if posted.entries else None
                    result.refunded += 1
                    result.points += redemption.points
                redemption.save(update_fields=["status", "expired_at", "refund_entry"])
                _give_back_stock(redemption)
                result.coupons += 1
                transaction.on_commit(
                    lambda r=redemption, p=program, f=refund: signals.redemption_expired.send(
                        sender=Redemption, program=p, redemption=r, refunded=f
                    )
                )
            last_id = batch[-1].id


def reward_gift(
    *,
    program: Program,
    member: Member,
    reward: Reward,
    reason: str,
    idempotency_key: str,
    now: dt.datetime | None = None,
) -> Redemption:
    """Give a member a reward's coupon for free (an automation's action): no points are spent
    and no ledger entry is written; the reward must be this program's and active, and a unit
    of its stock is taken. The tier and per-member limit of the catalog do not apply (the
    merchant chose to give it). A points-as-money-off reward gives the value of its minimum
    points (`gift_points`). Idempotent by `idempotency_key`: a second call returns the
    first coupon. Refusals: `RewardNotFound`, `RewardUnavailable`, `MemberBlocked`."""
    now = now or timezone.now()
    with transaction.atomic():
        payload = {"member": member.pk, "reward": reward.pk, "reason": reason}
        record = ledger.idempotency_key_claim(
            program=program, key=idempotency_key, operation="reward_gift", payload=payload, now=now
        )
        if record is not None:
            return Redemption.objects.get(pk=record.result["redemption_id"])
        if reward.program_id != program.id or member.program_id != program.id:
            raise RewardNotFound("No such reward in this program.", reward_id=reward.pk)
        if member.is_blocked:
            raise errors.MemberBlocked("The member is blocked.", member_id=member.pk)
        reward.refresh_from_db()
        problem = selectors.reward_refusal(reward=reward, member=None, now=now)
        if problem is not None:
            raise RewardUnavailable(problem.message, reason=problem.reason, reward_id=reward.pk)
        counts_against_stock = reward.stock is not None
        if counts_against_stock and not _take_stock(reward):
            raise RewardUnavailable("This reward is out of stock.", reason="out_of_stock", reward_id=reward.pk)
        code = _fresh_code()
        redemption = Redemption.objects.create(
            program=program,
            reward=reward,
            member=member,
            code=code,
            points=0,
            kind=reward.kind,
            value=_gift_value(reward),
            sku=reward.sku,
            entry=None,
            counts_against_stock=counts_against_stock,
            issued_at=now,
            expires_at=_coupon_expiry(program, reward, now),
        )
        ledger.idempotency_key_settle(program=program, key=idempotency_key, result={"redemption_id": redemption.pk})
        transaction.on_commit(
            lambda: signals.reward_redeemed.send(
                sender=Redemption, program=program, redemption=redemption, member_id=member.pk
            )
        )
    return redemption


def reward_issue_for_automation(
    *, program_id: int, member_id: int, reward_id: int, reason: str, idempotency_key: str, now: dt.datetime
) -> dict[str, Any]:
    """The automations' hook (`workflows.automations.reward_issue_hook`): a gift coupon (its code,
    value and expiry), or the reason it could not be given, as JSON for the run's details. A refusal never fails the
    automation's chunk: it runs in a savepoint and is reported."""
    program = Program.objects.get(pk=program_id)
    member = Member.objects.get(pk=member_id)
    reward = Reward.objects.filter(pk=reward_id).first()
    if reward is None:
        return {"id": reward_id, "status": "refused", "reason": "reward_not_found"}
    try:
        with transaction.atomic():
            coupon = reward_gift(
                program=program, member=member, reward=reward, reason=reason, idempotency_key=idempotency_key, now=now
            )
    except errors.LoyaltyError as exc:
        return {"id": reward_id, "status": "refused", "reason": exc.details.get("reason", exc.code)}
    return {
        "id": reward_id,
        "status": "issued",
        "code": coupon.code,
        "value": None if coupon.value is None else str(coupon.value),
        "expires_at": None if coupon.expires_at is None else coupon.expires_at.isoformat(),
    }
