"""Locking a member (docs/contributing.md): every lock of member rows in the project goes through here.

Members are always locked in id order, so two transactions that lock several members (a
transfer, a job's chunk, a card merge) can never deadlock on them. A post locks the member
before it reads a balance; a lock already held by the same transaction is re-entrant, so a
higher app may lock a member, check its own rules and then post.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import QuerySet

from .models import Member

MEMBER = Member._meta.db_table


def member_for_update(*, member_id: int) -> QuerySet[Member]:
    """The member row, locked (queried when evaluated)."""
    return Member.objects.select_for_update().filter(pk=member_id)


def members_for_update(ids: Iterable[int]) -> QuerySet[Member]:
    """Member rows by id, locked in id order (queried when evaluated)."""
    return Member.objects.select_for_update().filter(pk__in=list(ids)).order_by("pk")


def lock_member_rows(cursor: Any, ids: Iterable[int], columns: Sequence[str] = ("id",)) -> list[tuple[Any, ...]]:
    """Lock the member rows `ids` in id order with `cursor` and return `columns` of each, in id
    order (one statement). For the ledger's SQL paths, which work without model instances."""
    cursor.execute(
        f"SELECT {', '.join(columns)} FROM {MEMBER} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
        [sorted(set(ids))],
    )
    return cursor.fetchall()
