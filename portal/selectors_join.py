"""What the join page tells a visitor before they join (docs/portal.md, "Joining"): the welcome
bonus, and, when they came by a friend's referral link, who invited them and what they get."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Q

from loyalty.models import Member, Program
from workflows.customer_text import rule_customer_text
from workflows.models import EarningRule, ReferralSettings


@dataclass
class JoinOffer:
    welcome: list[str] = field(default_factory=list)  # the signup rules, as members read them
    referrer_name: str = ""  # the first name of the member whose code the link carries
    friend_points: int = 0  # what the friend gets after a first purchase (0: no active offer)
    min_order: object = None  # the first purchase's minimum amount, if any


def join_offer(*, program: Program, referral_code: str, now: dt.datetime) -> JoinOffer:
    """The welcome bonus and the invitation of a referral code (a code of no active member of
    this program shows no invitation; the form still checks it when it is sent). Queries: 1-3."""
    rules = (
        EarningRule.objects.filter(program_id=program.pk, trigger="signup", is_active=True)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .order_by("-priority", "id")
    )
    offer = JoinOffer(welcome=[rule_customer_text(rule, program) for rule in rules if rule.multiplier != 0])
    code = referral_code.strip().upper()
    if not code:
        return offer
    referrer = (
        Member.objects.filter(program_id=program.pk, referral_code=code, status=Member.Status.ACTIVE)
        .only("first_name")
        .first()
    )
    if referrer is None:
        return offer
    offer.referrer_name = referrer.first_name
    settings = ReferralSettings.objects.filter(program_id=program.pk, is_active=True).first()
    if settings is not None and settings.friend_points:
        offer.friend_points = settings.friend_points
        offer.min_order = settings.min_order_amount or None
    return offer
