"""Referrals: a friend enrolled with a member's referral code; both earn when the friend's first
qualifying purchase happens. (Skeleton: the implementation follows.)"""

from __future__ import annotations

import datetime as dt

from loyalty.models import Activity, Member

from .models import Referral


def referral_create(*, friend: Member, referrer: Member, now: dt.datetime | None = None) -> Referral | None:
    """Record that `referrer` referred `friend` (fraud guards decide pending or rejected)."""
    return None


def referral_on_purchase(*, activity: Activity, member: Member, now: dt.datetime) -> None:
    """Inside `activity_report`'s transaction: reward a pending referral of `member` if this
    purchase qualifies."""
    return None
