"""Chunking members by id for the scheduled jobs: each chunk is a range of member ids that one
transaction handles, so a job's memory and lock time stay bounded at any number of members
and a crash loses at most the chunk in flight."""

from __future__ import annotations

from collections.abc import Iterator

from django.db import connection

from .models import Member

MEMBER = Member._meta.db_table


def member_id_ranges(*, program_id: int | None, chunk_size: int) -> Iterator[tuple[int, int]]:
    """[lo, hi) member-id ranges of `chunk_size` members each (of `program_id`, or of every
    program when None), keyset on the primary key and computed lazily: each range starts where
    the last one ended, so members enrolled during the run land in a later range.
    Queries: 1, then 1 per range (an index-only walk of at most `chunk_size` ids)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    where = "program_id = %s" if program_id is not None else "TRUE"
    scope = [program_id] if program_id is not None else []
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(id), max(id) FROM {MEMBER} WHERE {where}", scope)
        low, high = cursor.fetchone()
    if low is None:
        return
    lo = low
    while lo <= high:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {MEMBER} WHERE {where} AND id >= %s ORDER BY id OFFSET %s LIMIT 1",
                [*scope, lo, chunk_size],
            )
            row = cursor.fetchone()
        hi = row[0] if row else high + 1
        yield lo, hi
        lo = hi
