"""Locking querysets of the rewards app (docs/contributing.md). Lock order everywhere: the coupon,
then the member, then the reward, so concurrent redemptions and cancellations cannot deadlock."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from loyalty.models import IdempotencyRecord, Member, Program

from .models import Redemption

_MEMBER_FIELDS = [f.attname for f in Member._meta.concrete_fields]
_LOCK_SQL = (
    f"SELECT {', '.join(f'm.{f.column}' for f in Member._meta.concrete_fields)}, "
    f"EXISTS (SELECT 1 FROM {IdempotencyRecord._meta.db_table} WHERE program_id = %s AND key = %s) "
    f"FROM {Member._meta.db_table} m WHERE m.id = %s FOR UPDATE OF m"
)


def member_for_update_seeing_key(*, member_id: int, program: Program, key: str | None) -> Member | None:
    """The member row, locked, with `key_seen`: whether the idempotency store holds `key`
    for `program`; None when there is no such member. One statement, read without the ORM's
    query building (a redemption's hot path)."""
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_SQL, [program.pk, key or "", member_id])
        row = cursor.fetchone()
    if row is None:
        return None
    member = Member.from_db(connection.alias, _MEMBER_FIELDS, row[:-1])
    member.key_seen = bool(key) and row[-1]
    return member


def redemption_for_update(*, program_id: int, code: str) -> QuerySet[Redemption]:
    return (
        Redemption.objects.select_for_update(of=("self",))
        .select_related("reward")
        .filter(program_id=program_id, code=code)
    )
