"""Referrals: a friend enrolled with a member's referral code; both earn when the friend's first
qualifying purchase happens.

`referral_create` runs when the friend enrols (the `member_enrolled` receiver) and records the
referral once per friend: pending, or rejected by a fraud guard (kept for staff review).
`referral_on_purchase` runs inside `activity_report`'s transaction for every purchase, with the
friend's row locked: the first qualifying purchase pays the friend and (within the monthly
cap) the referrer, and marks the referral rewarded, exactly once. The points come from the
program's `ReferralSettings`, not from earning rules.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.apps import apps
from django.db import IntegrityError, transaction
from django.utils import timezone

from loyalty import errors
from loyalty import services as ledger
from loyalty.models import Activity, Member, Program

from . import lock_objects, signals
from .models import Referral, ReferralSettings

logger = logging.getLogger(__name__)

# Providers whose addresses ignore dots in the local part.
DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

REASON_SELF = "Self-referral: the friend is the referrer"
REASON_SAME_EMAIL = "Self-referral: same email address"
REASON_SAME_CUSTOMER = "Self-referral: same customer id"
REASON_OTHER_PROGRAM = "The referrer belongs to another program"
REASON_REFERRER_BLOCKED = "The referrer is blocked"
REASON_CAP = "Monthly cap reached"
REASON_REFERRER_BLOCKED_AT_PURCHASE = "The referrer is blocked: no points for the referrer"

# What the postings tell the in-transaction receivers: the referral's own email
# (`referral_rewarded_in_transaction`) announces these points, not a points_earned one.
REFERRAL_CONTEXT = {"activity_type": Activity.Type.REFERRAL.value, "announced_by": "referral"}


def email_identity(email: str) -> str:
    """The mailbox an address delivers to, for comparing two members' emails: lower case,
    without a "+tag" in the local part, and for Gmail without the dots of the local part (and
    googlemail.com as gmail.com). Empty for an empty address. Pure; no query."""
    email = (email or "").strip().lower()
    if "@" not in email:
        return email
    local, _, domain = email.rpartition("@")
    local = local.split("+", 1)[0]
    if domain in DOTLESS_DOMAINS:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def _rejection(*, friend: Member, referrer: Member) -> str:
    """The fraud guard that refuses this referral, or "" when none does. No query."""
    if friend.pk == referrer.pk:
        return REASON_SELF
    if referrer.program_id != friend.program_id:
        return REASON_OTHER_PROGRAM
    if referrer.is_blocked:
        return REASON_REFERRER_BLOCKED
    friend_email, referrer_email = email_identity(friend.email), email_identity(referrer.email)
    if friend_email and friend_email == referrer_email:
        return REASON_SAME_EMAIL
    friend_id = (friend.external_id or "").strip().casefold()
    if friend_id and friend_id == (referrer.external_id or "").strip().casefold():
        return REASON_SAME_CUSTOMER
    return ""


def referral_create(*, friend: Member, referrer: Member, now: dt.datetime | None = None) -> Referral | None:
    """Record that `referrer` referred `friend`. Once per friend: a second call returns the
    existing referral unchanged (the unique friend settles a race).

    The fraud guards reject the referral (status rejected, with the reason, still recorded for
    staff review) when the friend is the referrer, the referrer belongs to another program or
    is blocked, or both have the same email (see `email_identity`) or the same customer id
    (case and surrounding spaces ignored). When the friend's program has no active referral
    offer nothing is recorded and None is returned: switching the offer on later does not pay
    friends who enrolled while it was off. Queries: 2-3."""
    now = now or timezone.now()
    existing = Referral.objects.filter(friend_id=friend.pk).first()
    if existing is not None:
        return existing
    if not ReferralSettings.objects.filter(program_id=friend.program_id, is_active=True).exists():
        return None
    # Fresh rows: the guards read the referrer's status and the emails as they are now.
    members = Member.objects.in_bulk([friend.pk, referrer.pk])
    friend, referrer = members[friend.pk], members[referrer.pk]
    reason = _rejection(friend=friend, referrer=referrer)
    referral = Referral(
        program_id=friend.program_id,
        referrer=referrer,
        friend=friend,
        status=Referral.Status.REJECTED if reason else Referral.Status.PENDING,
        reason=reason,
        created_at=now,
    )
    referral.full_clean(exclude=["program", "referrer", "friend"], validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            referral.save(force_insert=True)
    except IntegrityError:  # a concurrent call recorded this friend's referral first
        return Referral.objects.get(friend_id=friend.pk)
    if reason:
        logger.info("Referral of member %s by member %s rejected: %s", friend.pk, referrer.pk, reason)
    return referral


def _display_name(member: Member) -> str:
    """How a member is named in the other member's history: first name and initial, never
    the email or the shop's customer id."""
    initial = f" {member.last_name[:1]}." if member.last_name else ""
    return f"{member.first_name}{initial}" if member.first_name else f"member #{member.pk}"


def _month(program: Program, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The calendar month (program time zone) around `moment`, as [start, end)."""
    first = program.local_date(moment).replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return program.start_of_day(first), program.start_of_day(following)


def _qualifies(*, activity: Activity, friend: Member, settings: ReferralSettings) -> bool:
    if settings.min_order_amount is not None and (activity.amount or 0) < settings.min_order_amount:
        return False
    if settings.qualify_within_days is not None:
        deadline = friend.enrolled_at + dt.timedelta(days=settings.qualify_within_days)
        if activity.occurred_at > deadline:
            return False
    return True


def _evaluate_tier(*, member: Member, now: dt.datetime) -> None:
    """The referrer's points count towards their tier: upgrade at once, like an activity."""
    if not apps.is_installed("tiers"):
        return
    from tiers.services import tier_evaluate_member  # an optional app, a layer below workflows

    tier_evaluate_member(member=member, now=now)


def referral_on_purchase(*, activity: Activity, member: Member, now: dt.datetime) -> Referral | None:
    """Inside `activity_report`'s transaction, with `member` (the friend) locked: if the
    member has a pending referral, the program's referral offer is active and this purchase
    qualifies (amount >= `min_order_amount`; within `qualify_within_days` of the friend's
    enrolment, when set), reward it and return it; else return None and change nothing.

    Rewarding: the referral row and then the referrer's row are locked (friend -> referrer,
    the order of enrolment, so no lock cycle), the referrer's referrals already paid in the
    purchase's calendar month (program time zone) are counted, and the referrer gets
    `referrer_points` unless `monthly_cap` is reached or they are blocked; the friend always
    gets `friend_points`. Each member gets a `referral` activity (reference: the order id) and
    the points through `loyalty.services.points_earn`. The referral becomes rewarded with
    `qualified_at` (the purchase's time), the order id, the points and the reason a referrer
    got nothing. Exactly once: the pending row is locked and updated under the lock, and a
    replayed purchase never gets here. A member without `referred_by` has no referral
    (`referral_create` is called for referred members only): no query then."""
    if member.referred_by_id is None:
        return None
    referral = lock_objects.pending_referral_for_update(friend_id=member.pk).first()
    if referral is None:
        return None
    settings = ReferralSettings.objects.filter(program_id=member.program_id, is_active=True).first()
    if settings is None or not _qualifies(activity=activity, friend=member, settings=settings):
        return None
    program = activity.program
    referrer = lock_objects.member_for_update(member_id=referral.referrer_id).get()
    qualified_at = activity.occurred_at

    referrer_points, reason = settings.referrer_points, ""
    if referrer.is_blocked:
        referrer_points, reason = 0, REASON_REFERRER_BLOCKED_AT_PURCHASE
    elif settings.monthly_cap is not None:
        start, end = _month(program, qualified_at)
        paid = Referral.objects.filter(
            referrer_id=referrer.pk,
            status=Referral.Status.REWARDED,
            referrer_points__gt=0,
            qualified_at__gte=start,
            qualified_at__lt=end,
        ).count()
        if paid >= settings.monthly_cap:
            referrer_points, reason = 0, REASON_CAP

    details = {"referral_id": referral.pk, "order_id": activity.order_id}
    friend_activity = ledger.activity_record(
        program=program,
        member=member,
        type=Activity.Type.REFERRAL,
        occurred_at=qualified_at,
        order_id=activity.order_id,
        data={**details, "role": "friend", "referrer_id": referrer.pk},
    )
    if settings.friend_points:
        ledger.points_earn(
            program=program,
            member_id=member.pk,
            points=settings.friend_points,
            reason=f"Referral bonus: welcome from {_display_name(referrer)}",
            reference=activity.order_id,
            activity=friend_activity,
            now=now,
            context=REFERRAL_CONTEXT,
        )
    referrer_activity = ledger.activity_record(
        program=program,
        member=referrer,
        type=Activity.Type.REFERRAL,
        occurred_at=qualified_at,
        order_id=activity.order_id,
        data={**details, "role": "referrer", "friend_id": member.pk, "paid": bool(referrer_points)},
    )
    if referrer_points:
        ledger.points_earn(
            program=program,
            member_id=referrer.pk,
            points=referrer_points,
            reason=f"Referral bonus: {_display_name(member)} joined",
            reference=activity.order_id,
            activity=referrer_activity,
            now=now,
            context=REFERRAL_CONTEXT,
        )
    updated = Referral.objects.filter(pk=referral.pk, status=Referral.Status.PENDING).update(
        status=Referral.Status.REWARDED,
        qualified_at=qualified_at,
        order_id=activity.order_id,
        referrer_points=referrer_points,
        friend_points=settings.friend_points,
        reason=reason,
    )
    if updated != 1:  # impossible under the row lock; refuse rather than pay twice
        raise errors.Conflict("The referral was rewarded meanwhile.", referral_id=referral.pk)
    signals.referral_rewarded_in_transaction.send(
        sender=Referral,
        program=program,
        referral=referral,
        friend=member,
        referrer=referrer,
        friend_points=settings.friend_points,
        referrer_points=referrer_points,
    )
    if referrer_points:
        referrer.program = program
        _evaluate_tier(member=referrer, now=now)
    referral.refresh_from_db()
    return referral
