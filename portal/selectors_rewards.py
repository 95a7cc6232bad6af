"""Reads of the portal's rewards, coupons and refer-a-friend pages (docs/portal.md). Whether a
reward may be redeemed is `rewards.selectors`' rule; here only what the member's points allow
and how a points-as-money-off reward's choices are offered."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from loyalty.models import Member, Program
from rewards import selectors as reward_selectors
from rewards.models import Redemption, Reward
from workflows.models import Referral, ReferralSettings

from .paging import Paged, paged

COUPONS_PAGE_SIZE = 20  # my coupons, newest first, in pages (portal.paging)
REFERRALS_PAGE_SIZE = 50
SELECT_LIMIT = 40  # more choices than this: a number input with a step instead of a list


@dataclass(frozen=True)
class PointsChoice:
    points: int
    value: Decimal


@dataclass
class CatalogItem:
    reward: Reward
    refusal: reward_selectors.Refusal | None
    cost: int | None  # fixed cost; None for points as money off
    missing: int = 0  # points the member lacks for the cheapest way to redeem it
    choices: list[PointsChoice] = field(default_factory=list)  # points as money off, within reach
    low: int = 0  # points as money off: the bounds the member can choose between
    high: int = 0
    step: int = 1

    @property
    def available(self) -> bool:
        return self.refusal is None and self.missing == 0

    @property
    def as_select(self) -> bool:
        return len(self.choices) <= SELECT_LIMIT


def money_for(reward: Reward, points: int) -> Decimal:
    """What `points` of a points-as-money-off reward are worth, as the coupon will say
    (rewards.services rounds down to the cent the same way)."""
    return (Decimal(points) * (reward.value or Decimal(0))).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)


def points_bounds(*, reward: Reward, program: Program, available: int) -> tuple[int, int, int]:
    """(lowest, highest, step) of the points the member may choose for a points-as-money-off
    reward: multiples of its step within its minimum and maximum, the program's minimum
    redemption and the member's available points. highest < lowest: out of reach."""
    step = reward.points_step or 1
    low = max(reward.points_min or 0, program.min_redemption, step)
    low = -(-low // step) * step  # up to a multiple of the step
    high = available if reward.points_max is None else min(reward.points_max, available)
    high = (high // step) * step
    return low, high, step


def _item(reward: Reward, refusal: reward_selectors.Refusal | None, member: Member) -> CatalogItem:
    available = max(int(member.available), 0)
    if not reward.is_points_for_amount:
        cost = int(reward.cost_points or 0)
        return CatalogItem(reward=reward, refusal=refusal, cost=cost, missing=max(cost - available, 0))
    low, high, step = points_bounds(reward=reward, program=member.program, available=available)
    item = CatalogItem(reward=reward, refusal=refusal, cost=None, low=low, high=high, step=step)
    if high < low:
        item.missing = low - available
    else:
        count = (high - low) // step + 1
        shown = range(low, high + 1, step) if count <= SELECT_LIMIT else (low, high)
        item.choices = [PointsChoice(points=p, value=money_for(reward, p)) for p in shown]
    return item


def catalog_page(*, member: Member, now: dt.datetime) -> list[CatalogItem]:
    """The rewards the member sees, in catalog order, each with why it is not available (a
    refusal of rewards.selectors, or points lacking). Queries: 3 (rewards.selectors.catalog_for_member)."""
    return [
        _item(reward, refusal, member)
        for reward, refusal in reward_selectors.catalog_for_member(program=member.program, member=member, now=now)
    ]


def catalog_item(*, member: Member, reward_id: int, now: dt.datetime) -> CatalogItem | None:
    """One reward of the member's program as the catalog shows it, or None (another program's,
    or no such reward). Queries: 1-3."""
    reward = reward_selectors.reward_of_program(program=member.program, reward_id=reward_id)
    if reward is None:
        return None
    return _item(reward, reward_selectors.reward_refusal(reward=reward, member=member, now=now), member)


def coupon_status(coupon: Redemption, now: dt.datetime) -> str:
    """The coupon's status as the member should read it: an issued coupon past its expiry is
    expired even before the nightly job marks it."""
    if coupon.status == Redemption.Status.ISSUED and coupon.expires_at is not None and coupon.expires_at <= now:
        return Redemption.Status.EXPIRED
    return coupon.status


def coupons_of(*, member: Member, page: int) -> Paged:
    """One page of the member's coupons, newest first, with their rewards. Queries: 2 (the
    count and the page)."""
    queryset = Redemption.objects.filter(member_id=member.pk).select_related("reward").order_by("-issued_at", "-id")
    return paged(queryset, number=page, size=COUPONS_PAGE_SIZE)


def coupon_of(*, member: Member, coupon_id: int) -> Redemption | None:
    """The member's coupon with this id, or None (another member's is nobody's here). 1 query."""
    return Redemption.objects.filter(pk=coupon_id, member_id=member.pk).select_related("reward").first()


@dataclass
class ReferralPage:
    settings: ReferralSettings | None  # None or inactive: no offer at the moment
    referrals: Paged  # of Referral


def referral_page(*, member: Member, page: int) -> ReferralPage:
    """The program's referral offer and one page of the member's referrals (newest first, with
    the friend's first name). Queries: 3."""
    settings = ReferralSettings.objects.filter(program_id=member.program_id).first()
    queryset = (
        Referral.objects.filter(referrer_id=member.pk)
        .select_related("friend")
        .only("status", "created_at", "referrer_points", "friend", "friend__first_name")
        .order_by("-created_at", "-id")
    )
    return ReferralPage(settings=settings, referrals=paged(queryset, number=page, size=REFERRALS_PAGE_SIZE))
