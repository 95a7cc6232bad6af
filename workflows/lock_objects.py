"""Locking querysets of the workflows app (docs/contributing.md)."""

from __future__ import annotations

from django.apps import apps
from django.db import connection
from django.db.models import QuerySet

from loyalty.lock_objects import member_for_update  # noqa: F401  (the one member lock, re-exported)
from loyalty.models import IdempotencyRecord, Member, Program

from .models import BudgetUse, Referral

_MEMBER_FIELDS = [f.attname for f in Member._meta.concrete_fields]
_MEMBER_COLUMNS = ", ".join(f"m.{f.column}" for f in Member._meta.concrete_fields)


def member_with_tier_for_update(*, member_id: int, program: Program, key: str | None = None) -> Member | None:
    """The member row, locked, with its tier read in the same statement: `tier_id_now` (None
    without a tier) and `tier_multiplier_now` (None without a tier), and `key_seen`: whether
    the idempotency store holds `key` for `program`. One statement where an activity needs the
    lock, the tier multiplier (the tiers app optional: both None) and its key check. Raw SQL:
    the ORM's subquery annotations (and a raw queryset's column mapping) cost more CPU than the
    statement costs to run."""
    if apps.is_installed("tiers"):
        from tiers.models import MemberTier, Tier  # an optional app, a layer below workflows

        state, tier = MemberTier._meta.db_table, Tier._meta.db_table
        tier_columns = (
            f"(SELECT s.tier_id FROM {state} s WHERE s.member_id = m.id AND s.tier_id IS NOT NULL) AS tier_id_now, "
            f"(SELECT t.multiplier FROM {state} s JOIN {tier} t ON t.id = s.tier_id WHERE s.member_id = m.id) "
            "AS tier_multiplier_now"
        )
    else:
        tier_columns = "NULL::bigint AS tier_id_now, NULL::numeric AS tier_multiplier_now"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_MEMBER_COLUMNS}, {tier_columns}, "
            f"EXISTS (SELECT 1 FROM {IdempotencyRecord._meta.db_table} WHERE program_id = %s AND key = %s) AS key_seen "
            f"FROM {Member._meta.db_table} m WHERE m.id = %s FOR UPDATE OF m",
            [program.pk, key or "", member_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    # The model from the row directly (a raw queryset maps its columns again on every call).
    member = Member.from_db(connection.alias, _MEMBER_FIELDS, row[: len(_MEMBER_FIELDS)])
    member.tier_id_now, member.tier_multiplier_now, member.key_seen = row[len(_MEMBER_FIELDS) :]
    return member


def pending_referral_for_update(*, friend_id: int) -> QuerySet[Referral]:
    """The friend's pending referral, locked before the payout (locked after the friend's member
    row and before the referrer's, so payouts of one referrer's friends queue in one order)."""
    return Referral.objects.select_for_update().filter(friend_id=friend_id, status=Referral.Status.PENDING)


def budget_uses_for_update(*, keys: list[tuple[str, int, str]]) -> list[BudgetUse]:
    """The budget counter rows of these (scope, owner id, period key), locked in id order (one
    statement). Taken before any member row (workflows.budgets), so budget and member locks
    never wait on each other in a cycle."""
    if not keys:
        return []
    return list(
        BudgetUse.objects.raw(
            f"SELECT * FROM {BudgetUse._meta.db_table} WHERE (scope, owner_id, period_key) IN "
            "(SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[])) ORDER BY id FOR UPDATE",
            [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]],
        )
    )
