"""Reads of the rewards app: whether a member may redeem a reward, the catalog, a coupon."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, QuerySet

from loyalty.models import Member, Program
from tiers.models import MemberTier, Tier

from . import codes
from .models import Redemption, Reward

LIMIT_STATUSES = (Redemption.Status.ISSUED, Redemption.Status.USED, Redemption.Status.EXPIRED)


@dataclass(frozen=True)
class Refusal:
    reason: str  # inactive, not_started, ended, tier, limit_reached, out_of_stock
    message: str


_REWARD_FIELDS = [f.attname for f in Reward._meta.concrete_fields]
_TIER_FIELDS = [f.attname for f in Tier._meta.concrete_fields]
_REWARD_SQL = (
    f"SELECT {', '.join(f'r.{f.column}' for f in Reward._meta.concrete_fields)}, "
    f"{', '.join(f't.{f.column}' for f in Tier._meta.concrete_fields)} "
    f"FROM {Reward._meta.db_table} r LEFT JOIN {Tier._meta.db_table} t ON t.id = r.min_tier_id "
    "WHERE r.program_id = %s AND r.id = %s"
)


def reward_of_program(*, program: Program, reward_id: int) -> Reward | None:
    """The reward of `program` with this id, its `min_tier` loaded, or None. One statement (the
    ORM's `select_related(...).first()` with its query building cost a redemption more CPU
    than the rest of its reads)."""
    with connection.cursor() as cursor:
        cursor.execute(_REWARD_SQL, [program.pk, reward_id])
        row = cursor.fetchone()
    if row is None:
        return None
    n = len(_REWARD_FIELDS)
    reward = Reward.from_db(connection.alias, _REWARD_FIELDS, row[:n])
    reward.min_tier = None if row[n] is None else Tier.from_db(connection.alias, _TIER_FIELDS, row[n:])
    reward.program = program
    return reward


_UNKNOWN: object = object()


def reward_refusal(
    *,
    reward: Reward,
    member: Member | None,
    now: dt.datetime,
    tier_position: int | object | None = _UNKNOWN,
    held: int | None = None,
) -> Refusal | None:
    """Why `member` may not redeem `reward` now (None: they may, points aside). Queries: up to 2
    (the member's tier, their coupons of this reward); none for what the caller passes in:
    `tier_position` (the position of the member's tier, None for no tier) and `held` (their
    coupons of this reward counting against its limit), as `catalog_for_member` does."""
    if not reward.is_active:
        return Refusal("inactive", "This reward is not offered.")
    if reward.starts_at and now < reward.starts_at:
        return Refusal("not_started", "This reward is not offered yet.")
    if reward.ends_at and now >= reward.ends_at:
        return Refusal("ended", "This reward is no longer offered.")
    if reward.stock is not None and reward.issued_count >= reward.stock:
        return Refusal("out_of_stock", "This reward is out of stock.")
    if member is None:
        return None
    if reward.min_tier_id is not None:
        if tier_position is _UNKNOWN:
            state = MemberTier.objects.filter(member_id=member.pk).select_related("tier").first()
            tier_position = state.tier.position if state and state.tier else None
        if tier_position is None or tier_position < reward.min_tier.position:  # type: ignore[operator]
            return Refusal("tier", f"This reward is for {reward.min_tier.name} members and above.")
    if reward.per_member_limit is not None:
        if held is None:
            held = Redemption.objects.filter(member_id=member.pk, reward=reward, status__in=LIMIT_STATUSES).count()
        if held >= reward.per_member_limit:
            return Refusal("limit_reached", f"A member may redeem this reward {reward.per_member_limit} time(s).")
    return None


def catalog(*, program: Program, now: dt.datetime) -> QuerySet[Reward]:
    """The active rewards of the program in their window, in catalog order (out-of-stock ones
    included: the API marks them unavailable)."""
    from django.db.models import Q

    return (
        Reward.objects.filter(program=program, is_active=True)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now), Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .select_related("min_tier")
        .order_by("position", "id")
    )


def coupon(*, program: Program, code: str) -> Redemption | None:
    """A coupon of the program by its code as typed (no query for an impossible code)."""
    normal = codes.normalize(code)
    if not normal:
        return None
    return Redemption.objects.filter(program=program, code=normal).select_related("reward", "member").first()


def catalog_for_member(*, program: Program, member: Member, now: dt.datetime) -> list[tuple[Reward, Refusal | None]]:
    """The catalog as `member` sees it: each reward with why they may not redeem it now (None:
    they may, points aside), by `reward_refusal`'s rules. Queries: 3 whatever the catalog's size
    (the rewards with their tiers, the member's tier, their coupons per limited reward)."""
    rewards = list(catalog(program=program, now=now))
    state = MemberTier.objects.filter(member_id=member.pk).select_related("tier").first()
    tier_position = state.tier.position if state and state.tier else None
    limited = [r.pk for r in rewards if r.per_member_limit is not None]
    held: dict[int, int] = {}
    if limited:
        held = dict(
            Redemption.objects.filter(member_id=member.pk, reward_id__in=limited, status__in=LIMIT_STATUSES)
            .values("reward_id")
            .annotate(n=Count("id"))
            .values_list("reward_id", "n")
        )
    return [
        (
            reward,
            reward_refusal(
                reward=reward, member=member, now=now, tier_position=tier_position, held=held.get(reward.pk, 0)
            ),
        )
        for reward in rewards
    ]
