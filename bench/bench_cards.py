"""Benchmark of bulk card creation and printing (issue 4, docs/performance.md "Cards").

1. One batch of N cards (default 1,000,000) through `batch_create` -> the generation task
   (eager) -> `batch_generate` in chunks of 50,000, against a raw COPY of N pre-generated rows
   into a copy of cards_card with the same indexes, in the same run. Prints seconds, cards/s
   and the ratio of rates (target: batch < 60 s and >= 50% of COPY's rate).
   `--variants` also times the staging-table path alone (COPY into a temp table + INSERT ...
   ON CONFLICT) and a raw COPY into a copy that also has cards_card's foreign keys.
2. The PDF sheet of a batch of M cards (default 10,000): seconds and file size.

Run (the database name must contain "bench": its cards tables are TRUNCATEd):
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_cards_bench
    .venv/bin/python bench/bench_cards.py                 # 1,000,000 cards + PDF of 10,000
    .venv/bin/python bench/bench_cards.py --cards 100000 --pdf-cards 1000 --variants
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

COPY_TABLE = "bench_cards_copy"
COPY_FK_TABLE = "bench_cards_copy_fk"


def reset_cards() -> None:
    common.execute("TRUNCATE cards_card, cards_cardbatch RESTART IDENTITY CASCADE")
    for table in (COPY_TABLE, COPY_FK_TABLE):
        common.execute(f"DROP TABLE IF EXISTS {table}")


def make_copy_table(name: str, *, with_fks: bool) -> None:
    """A copy of cards_card with the same columns, defaults, checks and indexes (and, with
    `with_fks`, the same deferred foreign keys to programs and batches)."""
    common.execute(f"CREATE TABLE {name} (LIKE cards_card INCLUDING ALL)")
    if with_fks:
        for column, target in (("program_id", "loyalty_program"), ("batch_id", "cards_cardbatch")):
            common.execute(
                f"ALTER TABLE {name} ADD FOREIGN KEY ({column}) REFERENCES {target} (id) DEFERRABLE INITIALLY DEFERRED"
            )


def raw_copy(table: str, numbers: list[str], program_id: int, batch_id: int, *, text: bool) -> float:
    """COPY the pre-generated rows (same columns as the batch writes) in one transaction,
    either one `write_row()` per row or the rows preformatted in COPY's text format."""
    from django.db import connection, transaction
    from django.utils import timezone

    now = timezone.now()
    connection.ensure_connection()
    pg = connection.connection
    columns = "number, program_id, batch_id, kind, status, created_at"
    started = time.perf_counter()
    with transaction.atomic(), pg.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        if text:
            tail = f"\t{program_id}\t{batch_id}\tphysical\tunassigned\t{now.isoformat()}\n"
            copy.write(tail.join(numbers) + tail)
        else:
            for number in numbers:
                copy.write_row((number, program_id, batch_id, "physical", "unassigned", now))
    return time.perf_counter() - started


def fresh_copy_table(name: str, *, with_fks: bool = False) -> None:
    common.execute(f"DROP TABLE IF EXISTS {name}")
    make_copy_table(name, with_fks=with_fks)
    common.settle_database((name,))


def timed_batch(program, quantity: int, chunk_size: int, *, staged: bool = False) -> tuple[float, object]:
    """batch_create with eager tasks: returns after the generation task ran."""
    from unittest import mock

    from cards import batches

    patches = []
    if staged:  # skip the COPY fast path: every chunk through the staging table

        def insert_staged(batch, need, candidates):
            from django.db import connection
            from django.utils import timezone

            connection.ensure_connection()
            return batches._insert_cards_staged(connection.connection, batch, need, candidates, timezone.now())

        patches.append(mock.patch.object(batches, "_insert_cards", insert_staged))
    # The task calls batches.batch_generate(batch_id=...): give it the chunk size asked for.
    patches.append(
        mock.patch.object(batches, "batch_generate", functools.partial(batches.batch_generate, chunk_size=chunk_size))
    )
    for p in patches:
        p.start()
    try:
        # config.settings.test runs tasks eagerly: this returns after the generation task ran.
        started = time.perf_counter()
        batch = batches.batch_create(program=program, quantity=quantity, note="bench", actor=None)
        seconds = time.perf_counter() - started
    finally:
        for p in reversed(patches):
            p.stop()
    batch.refresh_from_db()
    return seconds, batch


def check_batch(batch, quantity: int) -> None:
    count, distinct = common.scalar(
        "SELECT ARRAY[count(*), count(DISTINCT number)] FROM cards_card WHERE batch_id = %s", [batch.pk]
    )
    if (batch.status, batch.created, count, distinct) != ("done", quantity, quantity, quantity):
        sys.exit(
            f"batch {batch.pk} wrong: status={batch.status} created={batch.created} rows={count} distinct={distinct}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--cards", type=int, default=1_000_000, help="cards in the batch (default 1,000,000)")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--pdf-cards", type=int, default=10_000, help="cards in the PDF (0 = skip)")
    parser.add_argument("--variants", action="store_true", help="also time the staging path and COPY with FKs")
    args = parser.parse_args()

    common.setup_django(force_db=args.force_db)
    from cards import numbers
    from cards.models import CardBatch

    common.print_header(f"Cards: one batch of {args.cards:,} vs raw COPY; PDF of {args.pdf_cards:,}")
    reset_cards()
    program = common.bench_program("bench-cards", name="Bench Coffee Club", card_prefix="7", card_number_length=16)
    holder = CardBatch.objects.create(program=program, quantity=args.cards, note="COPY baseline rows' batch id")

    with common.Timer() as gen:
        rows = numbers.random_numbers(program.card_prefix, program.card_number_length, args.cards)
    # Raw COPY, both client methods, into an empty copy of the table each time.
    fresh_copy_table(COPY_TABLE)
    copy_row_s = raw_copy(COPY_TABLE, rows, program.pk, holder.pk, text=False)
    fresh_copy_table(COPY_TABLE)
    copy_text_s = raw_copy(COPY_TABLE, rows, program.pk, holder.pk, text=True)
    copy_s = min(copy_row_s, copy_text_s)

    common.settle_database(("cards_card", "cards_cardbatch"))
    batch_s, batch = timed_batch(program, args.cards, args.chunk_size)
    check_batch(batch, args.cards)

    results = [
        ("raw COPY, write_row() per row (same indexes)", copy_row_s),
        ("raw COPY, preformatted text (same indexes)", copy_text_s),
        (f"batch_create -> batch_generate (COPY fast path, chunks of {args.chunk_size:,})", batch_s),
    ]
    if args.variants:
        fresh_copy_table(COPY_FK_TABLE, with_fks=True)
        fk_s = raw_copy(COPY_FK_TABLE, rows, program.pk, holder.pk, text=True)
        results.append(("raw COPY, preformatted text, same indexes + foreign keys", fk_s))
        common.settle_database(("cards_card",))
        staged_s, staged = timed_batch(program, args.cards, args.chunk_size, staged=True)
        check_batch(staged, args.cards)
        results.append((f"batch (staging table + INSERT ON CONFLICT, chunks of {args.chunk_size:,})", staged_s))

    print(f"Python number generation alone (in the batch's time, not in COPY's): {gen.seconds:.1f} s")
    print()
    common.print_table(
        ("path", "seconds", "cards/s", "rate vs the faster raw COPY"),
        [(label, f"{s:.1f}", f"{args.cards / s:,.0f}", f"{copy_s / s:.0%}") for label, s in results],
    )
    ratio = copy_s / batch_s
    print(
        f"batch: {batch_s:.1f} s (target < 60 s: {common.verdict(batch_s < 60)}); "
        f"{ratio:.0%} of raw COPY's rate (target >= 50%: {common.verdict(ratio >= 0.5)})"
    )
    print()

    if args.pdf_cards:
        from cards.printing import render_sheet

        _s, pdf_batch = timed_batch(program, args.pdf_cards, args.chunk_size)
        pdf_batch = CardBatch.objects.select_related("program").get(pk=pdf_batch.pk)
        with tempfile.NamedTemporaryFile(suffix=".pdf") as out:
            with common.Timer() as pdf:
                pages = render_sheet(pdf_batch, out)
            out.flush()
            size = os.path.getsize(out.name)
        print(
            f"PDF of {args.pdf_cards:,} cards: {pdf.seconds:.1f} s, {pages:,} pages, {size / 2**20:.1f} MiB "
            f"({pdf.seconds / args.pdf_cards * 1000:.2f} ms and {size / args.pdf_cards / 1024:.1f} KiB per card)"
        )
    print(f"load at the end: {common.load_snapshot()}")
    reset_cards()


if __name__ == "__main__":
    main()
