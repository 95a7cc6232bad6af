"""Locking querysets of the workflows app (STYLE.md rule 5)."""

from __future__ import annotations

from django.apps import apps
from django.db.models import DecimalField, Exists, IntegerField, OuterRef, QuerySet, Subquery, Value

from loyalty.lock_objects import member_for_update  # noqa: F401  (the one member lock, re-exported)
from loyalty.models import IdempotencyRecord, Member, Program

from .models import Referral


def member_with_tier_for_update(*, member_id: int, program: Program, key: str | None = None) -> QuerySet[Member]:
    """The member row, locked, with its tier read in the same statement: `tier_id_now` (None
    without a tier) and `tier_multiplier_now` (None without a tier), and `key_seen`: whether
    the idempotency store holds `key` for `program`. One statement where an activity needs the
    lock, the tier multiplier (the tiers app optional: both None) and its key check."""
    seen = Exists(IdempotencyRecord.objects.filter(program=program, key=key)) if key else Value(False)
    members = Member.objects.select_for_update().filter(pk=member_id).annotate(key_seen=seen)
    if not apps.is_installed("tiers"):
        return members.annotate(
            tier_id_now=Value(None, output_field=IntegerField()),
            tier_multiplier_now=Value(None, output_field=DecimalField()),
        )
    from tiers.models import MemberTier  # an optional app, a layer below workflows

    state = MemberTier.objects.filter(member_id=OuterRef("pk"), tier__isnull=False)
    return members.annotate(
        tier_id_now=Subquery(state.values("tier_id")[:1]),
        tier_multiplier_now=Subquery(state.values("tier__multiplier")[:1]),
    )


def pending_referral_for_update(*, friend_id: int) -> QuerySet[Referral]:
    """The friend's pending referral, locked before the payout (locked after the friend's member
    row and before the referrer's, so payouts of one referrer's friends queue in one order)."""
    return Referral.objects.select_for_update().filter(friend_id=friend_id, status=Referral.Status.PENDING)
