"""The set-based jobs of the ledger: expiry of lots and release of pending points (rule 5,
docs/ledger.md). Each runs in chunks of whole members, one transaction per chunk, members
locked in id order like every posting; running a job twice changes nothing the second time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from loyalty import errors
from loyalty.lock_objects import lock_member_rows
from loyalty.models import LedgerJobRun, Program
from loyalty.signals import ledger_job_finished

from . import ledger_sql as sql
from .checks import check_aware


@dataclass(frozen=True)
class JobResult:
    lots: int
    points: int
    members: int
    chunks: int


_BEGINNING = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


def _run_chunks(
    *,
    job: str,
    pick_sql: str,
    apply_sql: str,
    now: dt.datetime,
    chunk_size: int,
    program: Program | None,
    after_chunk: Callable[[int], None] | None,
) -> JobResult:
    check_aware(now, "now")
    if chunk_size < 1:
        raise errors.InvalidInput("chunk_size must be positive.", field="chunk_size")
    program_clause = "AND program_id = %(program)s" if program else ""
    params: dict[str, Any] = {
        "now": now,
        "n": chunk_size,
        "program": program.id if program else None,
        "after": _BEGINNING,
    }
    started = timezone.now()
    lots = points = chunks = 0
    members: set[int] = set()
    while True:
        with transaction.atomic(durable=True), connection.cursor() as cur:
            cur.execute(pick_sql.format(program=program_clause), params)
            picked = cur.fetchall()
            if not picked:
                break
            # Members first, in id order, like every posting: no deadlock, no lost update.
            lock_member_rows(cur, {r[1] for r in picked})
            cur.execute(apply_sql, {"ids": [r[0] for r in picked], "now": now})
            done = cur.fetchall()
            params["after"] = picked[0][2]
            chunks += 1
            lots += sum(int(r[2]) for r in done)  # not len(picked): a posting may have taken some
            points += sum(int(r[1]) for r in done)
            members.update(r[0] for r in done)
            if after_chunk is not None:
                after_chunk(chunks)
    result = JobResult(lots=lots, points=points, members=len(members), chunks=chunks)
    LedgerJobRun.objects.create(
        job=job,
        as_of=now,
        started_at=started,
        finished_at=timezone.now(),
        lots=lots,
        points=points,
        members=len(members),
    )
    ledger_job_finished.send(sender=LedgerJobRun, job=job, as_of=now, lots=lots, points=points, members=len(members))
    return result


def points_expire(
    *,
    now: dt.datetime,
    chunk_size: int = 20_000,
    program: Program | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> JobResult:
    """Expire every lot whose expiry moment is at or before `now`, set-based, `chunk_size`
    lots per transaction. Idempotent: a second run (or a run after a crash) expires only what
    is still due. `after_chunk` is a hook for tests and progress reporting."""
    return _run_chunks(
        job="expire_points",
        pick_sql=sql.EXPIRE_PICK,
        apply_sql=sql.EXPIRE_LOTS,
        now=now,
        chunk_size=chunk_size,
        program=program,
        after_chunk=after_chunk,
    )


def points_release(
    *,
    now: dt.datetime,
    chunk_size: int = 20_000,
    program: Program | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> JobResult:
    """Make pending lots whose `available_at` has come available. Idempotent like expiry."""
    return _run_chunks(
        job="release_pending_points",
        pick_sql=sql.RELEASE_PICK,
        apply_sql=sql.RELEASE_LOTS,
        now=now,
        chunk_size=chunk_size,
        program=program,
        after_chunk=after_chunk,
    )
