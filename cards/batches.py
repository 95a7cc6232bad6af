"""Bulk creation of card stock (`CardBatch`): create, generate in chunks, resume, discard, and
the printable sheet's life cycle.

These are the batch write services (they move to `services.py` when the lead merges).

Invariants:
- The card rows are the truth. `batch.created` is updated in the same transaction as the
  cards it counts, under the batch row's lock, so `created == count(cards of the batch)` at
  every commit; a (re)start recounts the rows anyway and corrects the field.
- Uniqueness of numbers is the unique index on `cards_card.number`: a chunk inserts with
  `ON CONFLICT (number) DO NOTHING` and tops up what collided, never checks row by row.
- A batch is `done` only in the transaction that brings `created` to `quantity`; a failed
  chunk rolls back whole and leaves the batch `failed` with what earlier chunks committed.
- One generator per batch: a worker holds a session advisory lock on the batch while it
  generates. A second delivery of the task finds the lock taken and does nothing; a `running`
  batch whose lock nobody holds has lost its worker (killed, crashed) and may be resumed.
- Numbers are never deleted or reused: discarding a batch voids its stock cards.
- Who/what/when: every change of a batch's state writes a `CardBatchEvent` (created, resumed,
  discarded, failed, done, sheet_requested) in the transaction of the change; voiding the
  cards of a discarded batch writes their `CardEvent`s with one INSERT ... SELECT.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
from django.core.files import File
from django.db import connection, transaction
from django.utils import timezone

from loyalty import services as loyalty_services
from loyalty.errors import InvalidInput
from loyalty.models import Program

from . import numbers
from .errors import BatchStateInvalid
from .models import Card, CardBatch, CardBatchEvent, CardEvent

logger = logging.getLogger(__name__)

MAX_QUANTITY = 5_000_000
DEFAULT_CHUNK_SIZE = 50_000
# Collisions are rare (16-digit numbers: 10^14 random bodies); a chunk that still falls short
# after this many top-ups means the program's number space is nearly full.
MAX_TOP_UPS = 20
# Session advisory locks of batch generation: (namespace, batch id). 0x63617264 = "card".
ADVISORY_NAMESPACE = 0x63617264

Status = CardBatch.Status
SheetStatus = CardBatch.SheetStatus
EventKind = CardBatchEvent.Kind
ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING, Status.FAILED)


def _actor(actor: Any) -> Any:
    """The staff user to record, or None (the system, an anonymous caller)."""
    return actor if getattr(actor, "pk", None) is not None and getattr(actor, "is_authenticated", False) else None


def _record_batch_event(
    *, batch_id: int, kind: str, actor: Any = None, note: str = "", when: Any = None
) -> CardBatchEvent:
    """The who/what/when of a batch's state change, in the caller's transaction. Queries: 1."""
    event = CardBatchEvent(
        batch_id=batch_id, kind=EventKind(kind), actor=_actor(actor), at=when or timezone.now(), note=note
    )
    event.save(force_insert=True)
    return event


# --------------------------------------------------------------------------------------------
# Create, resume, discard


def _number_space(program: Program) -> int:
    """How many distinct random bodies the program's number format allows."""
    body_length = program.card_number_length - len(program.card_prefix) - 1
    return 10**body_length if body_length >= 6 else 0


def batch_create(
    *, program: Program, quantity: int, note: str = "", actor: Any, idempotency_key: str | None = None
) -> CardBatch:
    """A pending batch of `quantity` unassigned physical cards, and its generation queued
    after commit (with no broker, the task runs eagerly at commit: the batch is complete
    when this returns). Raises `InvalidInput` for a quantity outside 1..5,000,000 or a
    program whose number format leaves too little room. With `idempotency_key` (the admin
    form's token), a second submit returns the first batch instead of making another;
    `IdempotencyConflict` if the key came with a different request. Queries: 2 (insert,
    event), +2 with a key."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidInput(f"The quantity must be a whole number from 1 to {MAX_QUANTITY:,}.", field="quantity")
    space = _number_space(program)
    if space == 0:
        raise InvalidInput(
            "The program's card numbers are too short for its prefix (fewer than 6 random digits).", field="program"
        )
    # Keep collisions rare: at most 1% of the number space in one batch.
    if quantity > space // 100:
        raise InvalidInput(
            f"The program's number format allows too few numbers for {quantity:,} cards; use longer numbers.",
            field="quantity",
        )
    batch = CardBatch(program=program, quantity=quantity, note=note or "", created_by=_actor(actor))
    batch.full_clean()
    with transaction.atomic(durable=True):
        if idempotency_key is not None:
            first = loyalty_services.idempotency_key_claim(
                program=program,
                key=idempotency_key,
                operation="card_batch",
                payload={"quantity": quantity, "note": note},
            )
            if first is not None:
                return CardBatch.objects.get(pk=first.result["batch"])
        batch.save()
        _record_batch_event(batch_id=batch.pk, kind=EventKind.CREATED, actor=actor, note=f"{quantity:,} cards")
        if idempotency_key is not None:
            loyalty_services.idempotency_key_settle(program=program, key=idempotency_key, result={"batch": batch.pk})
        _enqueue_generation(batch.pk)
    return batch


def _enqueue_generation(batch_id: int) -> None:
    from .tasks import generate_batch_task  # tasks import this module

    generate_batch_task.delay_on_commit(batch_id)


def batch_worker_alive(*, batch_id: int) -> bool:
    """Whether another database session holds the batch's generation lock, i.e. a worker is
    generating it right now. Queries: 1 (pg_locks)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s AND objid = %s AND objsubid = 2 AND pid <> pg_backend_pid())",
            [ADVISORY_NAMESPACE, batch_id],
        )
        return bool(cursor.fetchone()[0])


def batch_is_stalled(batch: CardBatch) -> bool:
    """`running` with no worker holding its lock: the worker died mid-way. Queries: 1."""
    return batch.status == Status.RUNNING and not batch_worker_alive(batch_id=batch.pk)


def batch_can_resume(batch: CardBatch) -> bool:
    """Pending (queued, maybe lost), failed, or running without a live worker."""
    if batch.status in (Status.PENDING, Status.FAILED):
        return True
    return batch_is_stalled(batch)


def batch_resume(*, batch: CardBatch, actor: Any) -> CardBatch:
    """Queue the generation again for a failed, pending or stalled batch; generation goes on
    from the cards already committed. Idempotent: a done batch and a batch a live worker is
    generating are returned unchanged, a second resume only queues a task that finds nothing
    or the lock taken. Raises `BatchStateInvalid` for a discarded batch. Queries: 4."""
    with transaction.atomic(durable=True):
        locked = CardBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.status == Status.DISCARDED:
            raise BatchStateInvalid("A discarded batch cannot be resumed.", status=locked.status)
        if locked.status == Status.DONE:
            return locked
        if locked.status == Status.RUNNING and batch_worker_alive(batch_id=locked.pk):
            return locked
        CardBatch.objects.filter(pk=locked.pk).update(status=Status.PENDING, error="")
        _record_batch_event(
            batch_id=locked.pk,
            kind=EventKind.RESUMED,
            actor=actor,
            note=f"was {locked.get_status_display().lower()} at {locked.created:,} of {locked.quantity:,} cards",
        )
        _enqueue_generation(locked.pk)
        logger.info("Card batch %s resumed by %s", locked.pk, getattr(actor, "pk", None))
    locked.refresh_from_db()
    return locked


_VOID_STOCK_SQL = f"""
WITH voided AS (
    UPDATE {Card._meta.db_table} SET status = %(void)s
    WHERE batch_id = %(batch)s AND member_id IS NULL AND status IN (%(unassigned)s, %(blocked)s)
    RETURNING id
)
INSERT INTO {CardEvent._meta.db_table} (card_id, kind, member_id, actor_id, at, note)
SELECT id, %(kind)s, NULL, %(actor)s, %(at)s, %(note)s FROM voided
"""


def batch_discard(*, batch: CardBatch, actor: Any) -> CardBatch:
    """Discard a batch that is not done: status `discarded`, its stock cards (unassigned, or
    blocked without a member) `void`, each with a `voided` event. Numbers stay in the table,
    so they are never issued again. A worker still generating it stops at its next chunk (it
    re-reads the status under the same row lock). Idempotent on a discarded batch; raises
    `BatchStateInvalid` for a done batch. Queries: 4 (one UPDATE ... RETURNING of the batch's
    cards through the batch_id index feeding one INSERT of their events)."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        locked = CardBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.status == Status.DISCARDED:
            return locked
        if locked.status == Status.DONE:
            raise BatchStateInvalid("A complete batch cannot be discarded.", status=locked.status)
        with connection.cursor() as cursor:
            cursor.execute(
                _VOID_STOCK_SQL,
                {
                    "void": Card.Status.VOID.value,
                    "batch": locked.pk,
                    "unassigned": Card.Status.UNASSIGNED.value,
                    "blocked": Card.Status.BLOCKED.value,
                    "kind": CardEvent.Kind.VOIDED.value,
                    "actor": getattr(_actor(actor), "pk", None),
                    "at": now,
                    "note": f"batch {locked.pk} discarded",
                },
            )
            voided = cursor.rowcount
        CardBatch.objects.filter(pk=locked.pk).update(status=Status.DISCARDED, finished_at=now)
        _record_batch_event(
            batch_id=locked.pk,
            kind=EventKind.DISCARDED,
            actor=actor,
            note=f"was {locked.get_status_display().lower()}; {voided:,} cards void",
            when=now,
        )
        logger.info("Card batch %s discarded by %s", locked.pk, getattr(actor, "pk", None))
    locked.refresh_from_db()
    return locked


# --------------------------------------------------------------------------------------------
# Generation


@contextlib.contextmanager
def _generation_lock(batch_id: int) -> Iterator[bool]:
    """Session advisory lock on the batch for the whole generation (across its chunk
    transactions). Released at the end, or by PostgreSQL when the worker's connection dies."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_NAMESPACE, batch_id])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(Exception), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_NAMESPACE, batch_id])


def batch_generate(*, batch_id: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> CardBatch:
    """Create the batch's missing cards, `chunk_size` per transaction, and return the batch.

    Resumable: the count of the batch's cards is the truth; only the rest is generated. Each
    chunk is one transaction (numbers, COPY, insert, `created` and, on the last chunk,
    `done`). On an exception the batch becomes `failed` with the error text and what earlier
    chunks committed stays; the exception is logged, not raised (the batch row carries it).
    A batch that is done, discarded, or being generated by another worker is returned as is.
    """
    if chunk_size < 1:
        raise InvalidInput("The chunk size must be positive.", field="chunk_size")
    with _generation_lock(batch_id) as acquired:
        if not acquired:
            logger.info("Card batch %s is being generated by another worker", batch_id)
            return CardBatch.objects.get(pk=batch_id)
        try:
            if _generation_start(batch_id):
                with _NumberPrefetcher() as prefetcher:
                    while _generate_chunk(batch_id, chunk_size, prefetcher):
                        pass
        except Exception as exc:
            logger.exception("Card batch %s failed", batch_id)
            _generation_fail(batch_id, exc)
    return CardBatch.objects.get(pk=batch_id)


def _generation_start(batch_id: int) -> bool:
    """Mark the batch running and set `created` to the real count of its cards. False when
    there is nothing to do (done, discarded). Queries: 3 (count via the batch_id index)."""
    with transaction.atomic(durable=True):
        batch = CardBatch.objects.select_for_update().get(pk=batch_id)
        if batch.status in (Status.DONE, Status.DISCARDED):
            return False
        existing = Card.objects.filter(batch_id=batch_id).count()
        if existing > batch.quantity:  # impossible by construction; never call it done
            raise RuntimeError(f"Batch {batch_id} has {existing} cards for a quantity of {batch.quantity}.")
        now = timezone.now()
        fields: dict[str, Any] = {"created": existing, "error": ""}
        if existing == batch.quantity:
            fields.update(status=Status.DONE, finished_at=now)
            _record_batch_event(batch_id=batch_id, kind=EventKind.DONE, note=f"{existing:,} cards", when=now)
        else:
            fields.update(status=Status.RUNNING, finished_at=None)
            if batch.started_at is None:
                fields["started_at"] = now
        CardBatch.objects.filter(pk=batch_id).update(**fields)
        return existing < batch.quantity


class _NumberPrefetcher:
    """Draws the next chunk's numbers in a thread while PostgreSQL commits the current one.

    Drawing is CPU in Python (6-10 s per million here: CSPRNG and Luhn); the commit of a chunk
    is work in the server (deferred foreign-key checks, index and WAL flushes) during which
    this process only waits. Overlapping the two hides most of the drawing. The thread never
    touches the database; an error in it surfaces in the chunk that uses its numbers."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="card-numbers")
        self._pending: tuple[tuple[str, int, int], Future[list[str]]] | None = None

    def __enter__(self) -> _NumberPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def prefetch(self, prefix: str, length: int, count: int) -> None:
        self._pending = ((prefix, length, count), self._pool.submit(numbers.random_numbers, prefix, length, count))

    def take(self, prefix: str, length: int, count: int) -> list[str]:
        """`count` random numbers: the prefetched ones if they were drawn for this request."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == (prefix, length, count):
            return pending[1].result()
        return numbers.random_numbers(prefix, length, count)


def _generate_chunk(batch_id: int, chunk_size: int, prefetcher: _NumberPrefetcher) -> bool:
    """One transaction: up to `chunk_size` new cards, `created` moved by what was inserted,
    `done` when it reaches `quantity`. Returns whether cards remain to be generated."""
    with transaction.atomic(durable=True):
        batch = CardBatch.objects.select_for_update().select_related("program").get(pk=batch_id)
        if batch.status != Status.RUNNING:  # discarded (or otherwise stopped) meanwhile
            return False
        program = batch.program
        need = min(chunk_size, batch.quantity - batch.created)
        inserted = 0
        if need > 0:
            candidates = prefetcher.take(program.card_prefix, program.card_number_length, need)
            inserted = _insert_cards(batch, need, candidates)
        created = batch.created + inserted
        fields: dict[str, Any] = {"created": created}
        if created >= batch.quantity:
            now = timezone.now()
            fields.update(status=Status.DONE, finished_at=now)
            _record_batch_event(batch_id=batch_id, kind=EventKind.DONE, note=f"{created:,} cards", when=now)
        else:  # the next chunk's numbers are drawn while this one commits
            prefetcher.prefetch(
                program.card_prefix, program.card_number_length, min(chunk_size, batch.quantity - created)
            )
        CardBatch.objects.filter(pk=batch_id).update(**fields)
        return created < batch.quantity


_CARD_COLUMNS = "number, program_id, batch_id, kind, status, created_at"


def _copy_text(candidates: list[str], batch: CardBatch, now: Any) -> str:
    """The chunk's rows in COPY's text format. Digits, ids, fixed words and an ISO timestamp
    need no escaping; formatting them at once costs a tenth of the client CPU of one
    `write_row()` per row (docs/performance.md, "Cards")."""
    tail = "\t".join(
        (
            "",
            str(batch.program_id),
            str(batch.pk),
            Card.Kind.PHYSICAL.value,
            Card.Status.UNASSIGNED.value,
            now.isoformat(),
        )
    )
    return f"{tail}\n".join(candidates) + f"{tail}\n"


def _insert_cards(batch: CardBatch, need: int, candidates: list[str]) -> int:
    """Insert exactly `need` new cards of the batch (inside the caller's transaction) from
    `need` random `candidates`; returns `need`. Fast path: COPY straight into cards_card in a
    savepoint. If a number collides (unique violation), the savepoint is rolled back and the
    numbers go through a staging table and `INSERT ... ON CONFLICT (number) DO NOTHING`,
    topping up the shortfall with new numbers."""
    now = timezone.now()
    connection.ensure_connection()
    pg = connection.connection  # the psycopg 3 connection under Django's (same transaction)
    if len(set(candidates)) == len(candidates):
        try:
            with (
                transaction.atomic(),
                pg.cursor() as cur,
                cur.copy(f"COPY cards_card ({_CARD_COLUMNS}) FROM STDIN") as copy,
            ):
                copy.write(_copy_text(candidates, batch, now))
            return need
        except psycopg.errors.UniqueViolation:
            pass  # a number is taken: the savepoint was rolled back; go through staging
    return _insert_cards_staged(pg, batch, need, candidates, now)


def _insert_cards_staged(pg: Any, batch: CardBatch, need: int, candidates: list[str], now: Any) -> int:
    program = batch.program
    inserted = 0
    with pg.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS cards_batch_stage (number varchar(32) NOT NULL) ON COMMIT DELETE ROWS"
        )
        for _attempt in range(MAX_TOP_UPS + 1):
            cur.execute("TRUNCATE cards_batch_stage")
            with cur.copy("COPY cards_batch_stage (number) FROM STDIN") as copy:
                copy.write("".join(f"{number}\n" for number in candidates))
            cur.execute(
                # ON CONFLICT DO NOTHING also skips repeats inside the staged numbers. The
                # LIMIT is a guard: the candidates are never more than the shortfall.
                f"INSERT INTO cards_card ({_CARD_COLUMNS}) "
                "SELECT s.number, %s, %s, %s, %s, %s FROM cards_batch_stage s "
                "LIMIT %s ON CONFLICT (number) DO NOTHING",
                [program.pk, batch.pk, Card.Kind.PHYSICAL.value, Card.Status.UNASSIGNED.value, now, need - inserted],
            )
            inserted += cur.rowcount
            if inserted >= need:
                return inserted
            candidates = numbers.random_numbers(program.card_prefix, program.card_number_length, need - inserted)
    raise RuntimeError(
        f"Could not find {need - inserted} free card numbers after {MAX_TOP_UPS} top-ups: "
        "the program's number space is nearly exhausted."
    )


def _generation_fail(batch_id: int, exc: BaseException) -> None:
    text = f"{type(exc).__name__}: {exc}"[:2000]
    now = timezone.now()
    try:
        with transaction.atomic(durable=True):
            changed = (
                CardBatch.objects.filter(pk=batch_id)
                .exclude(status__in=[Status.DONE, Status.DISCARDED])
                .update(status=Status.FAILED, error=text, finished_at=now)
            )
            if changed:
                _record_batch_event(batch_id=batch_id, kind=EventKind.FAILED, note=text, when=now)
    except Exception:  # the connection itself may be gone; the batch then shows as stalled
        logger.exception("Could not mark card batch %s as failed", batch_id)


# --------------------------------------------------------------------------------------------
# Printable sheet (PDF)


def batch_sheet_request(*, batch: CardBatch, actor: Any) -> CardBatch:
    """Queue the printable PDF of a done batch (`sheet_status` pending; the task renders it
    and stores it in `batch.sheet`). Asking again re-renders (same numbers and PINs).
    Raises `BatchStateInvalid` unless the batch is done. Queries: 3."""
    from .tasks import render_batch_sheet_task

    with transaction.atomic(durable=True):
        locked = CardBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.status != Status.DONE:
            raise BatchStateInvalid("Only a complete batch can be printed.", status=locked.status)
        CardBatch.objects.filter(pk=locked.pk).update(sheet_status=SheetStatus.PENDING, sheet_error="")
        _record_batch_event(
            batch_id=locked.pk,
            kind=EventKind.SHEET_REQUESTED,
            actor=actor,
            note="rebuild" if locked.sheet_status else "",
        )
        render_batch_sheet_task.delay_on_commit(locked.pk)
        logger.info("Card batch %s sheet requested by %s", locked.pk, getattr(actor, "pk", None))
    locked.refresh_from_db()
    return locked


def batch_sheet_build(*, batch_id: int) -> CardBatch:
    """Render the batch's PDF into a temporary file, store it as `batch.sheet` and mark the
    sheet ready; on an error mark it failed with the error in `sheet_error` (logged, not
    raised). A batch that is not done is left alone. Reads the cards with a server-side
    cursor (memory stays flat)."""
    from .printing import render_sheet

    batch = CardBatch.objects.select_related("program").get(pk=batch_id)
    if batch.status != Status.DONE:
        return batch
    try:
        with tempfile.TemporaryFile() as out:
            render_sheet(batch, out)
            out.seek(0)
            old_name = batch.sheet.name
            batch.sheet.save(f"card-batch-{batch.pk}.pdf", File(out), save=False)
        CardBatch.objects.filter(pk=batch.pk).update(
            sheet=batch.sheet.name, sheet_status=SheetStatus.READY, sheet_error=""
        )
        if old_name and old_name != batch.sheet.name:
            batch.sheet.storage.delete(old_name)
    except Exception as exc:
        logger.exception("Card batch %s: the PDF sheet failed", batch_id)
        CardBatch.objects.filter(pk=batch.pk).update(
            sheet_status=SheetStatus.FAILED, sheet_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
    batch.refresh_from_db()
    return batch
