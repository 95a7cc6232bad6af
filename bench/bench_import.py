"""Member import: N members from one CSV file, with opening balances and a card number on some
(`cards.importing`: dry run, then apply: all-or-nothing in one transaction), against a raw
COPY of the same rows into a table shaped like loyalty_member (same columns, defaults,
constraints and indexes), in the same run. Target: the apply of 100,000 rows under 60 s.

Then the re-import of the same file (all rows unchanged, nothing written) and the ledger check.
With --import-export N, also django-import-export's ModelResource on N rows (dry run), the
alternative LIBRARIES.md names, for the record.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_import_bench \\
    .venv/bin/python bench/bench_import.py [--rows 100000] [--stock-cards 0.05] [--new-cards 0.10]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TARGET_SECONDS = 60.0
COPY_TABLE = "bench_member_copy"


def make_file(program, rows: int, stock: list[str], new_cards: float, seed: int = 7) -> bytes:
    """The CSV: every row a new member, most with an opening balance; `stock` numbers (unassigned
    cards of the program) on the first rows, then freshly drawn numbers (unknown to the
    database: registered as physical cards) on a `new_cards` share of the others."""
    from cards import numbers

    rng = random.Random(seed)
    fresh = iter(numbers.random_numbers("9", program.card_number_length, int(rows * new_cards) + 10))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["external_id", "email", "first_name", "last_name", "birthday", "card_number", "opening_balance"])
    for i in range(rows):
        if i < len(stock):
            card = stock[i]
        elif rng.random() < new_cards:
            card = next(fresh)
        else:
            card = ""
        writer.writerow(
            [
                f"shop-{i:07d}",
                f"customer{i}@example.com",
                rng.choice(("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald")),
                f"Lastname{i}",
                f"{rng.randint(1940, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                card,
                str(rng.choice((0, 10, 250, 1200, 5000, 17))),
            ]
        )
    return out.getvalue().encode()


def create_stock(program, count: int) -> list[str]:
    """`count` unassigned cards of the program (not timed)."""
    from cards import numbers

    drawn = list(dict.fromkeys(numbers.random_numbers(program.card_prefix, program.card_number_length, count)))
    C.execute(
        "INSERT INTO cards_card (number, program_id, member_id, batch_id, kind, status, created_at, assigned_at, "
        "claimed_at, blocked_at, replaced_by_id) SELECT n, %s, NULL, NULL, 'physical', 'unassigned', now(), NULL, "
        "NULL, NULL, NULL FROM unnest(%s::text[]) AS n",
        [program.id, drawn],
    )
    return drawn


def raw_copy(parsed_rows, program_id: int) -> float:
    """COPY the same rows (as member rows) into a fresh table shaped like loyalty_member."""
    import datetime as dt

    from django.db import connection, transaction

    from cards.importing import referral_codes

    C.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
    C.execute(f"CREATE TABLE {COPY_TABLE} (LIKE loyalty_member INCLUDING ALL)")
    codes = referral_codes(len(parsed_rows))
    now = dt.datetime.now(dt.UTC)
    columns = (
        "program_id, external_id, email, first_name, last_name, birthday, referral_code, status, "
        "enrollment_channel, email_consent, enrolled_at, available, pending, lifetime_earned, redeemed, expired"
    )
    with (
        C.Timer() as t,
        transaction.atomic(),
        connection.cursor() as cur,
        cur.cursor.copy(f"COPY {COPY_TABLE} ({columns}) FROM STDIN") as copy,
    ):
        for row, code in zip(parsed_rows, codes, strict=True):
            copy.write_row(
                (
                    program_id,
                    row.external_id,
                    row.email,
                    row.first_name,
                    row.last_name,
                    row.birthday,
                    code,
                    "active",
                    "import",
                    False,
                    now,
                    row.opening_balance,
                    0,
                    0,
                    0,
                    0,
                )
            )
    C.execute(f"DROP TABLE {COPY_TABLE}")
    return t.seconds


def import_export_dry_run(program, data: bytes, rows: int) -> float:
    """django-import-export 4.4: ModelResource on members, keyed by external_id, instance cache,
    bulk, model validation (email), dry run. Members only: no cards, no balances."""
    import tablib
    from django.utils import timezone
    from import_export import fields, resources, widgets
    from import_export.instance_loaders import CachedInstanceLoader

    from loyalty.models import Member, new_referral_code

    class MemberResource(resources.ModelResource):
        birthday = fields.Field(attribute="birthday", column_name="birthday", widget=widgets.DateWidget("%Y-%m-%d"))

        class Meta:
            model = Member
            import_id_fields = ["external_id"]
            fields = ("external_id", "email", "first_name", "last_name", "birthday")
            use_bulk = True
            batch_size = 2000
            skip_unchanged = True
            use_transactions = True
            rollback_on_validation_errors = True
            clean_model_instances = True
            instance_loader_class = CachedInstanceLoader

        def get_queryset(self):
            return Member.objects.filter(program=program)

        def init_instance(self, row=None):
            return Member(
                program=program,
                referral_code=new_referral_code(),
                enrolled_at=timezone.now(),
                enrollment_channel="import",
            )

    lines = data.decode().splitlines()[: rows + 1]
    dataset = tablib.Dataset().load("\n".join(line.rsplit(",", 2)[0] for line in lines), format="csv")
    with C.Timer() as t:
        result = MemberResource().import_data(dataset, dry_run=True)
    assert not result.has_errors()
    assert not result.has_validation_errors()
    return t.seconds


APPLY_PHASES = (
    ("look-ups: members and cards of the file", "FROM loyalty_member m JOIN unnest"),
    ("look-ups: members and cards of the file", "FROM cards_card c LEFT JOIN"),
    ("INSERT members (INSERT ... SELECT from the COPY'd temp table)", "INSERT INTO loyalty_member"),
    ("cards: assign stock, register, issue digital", "cards_card"),
    ("opening balances (points_credit_bulk: lock, entries, balances)", "FROM loyalty_member WHERE id = ANY"),
    ("opening balances (points_credit_bulk: lock, entries, balances)", "loyalty_ledgerentry"),
)


def _timed(statements: list[tuple[float, str]]):
    import time

    def wrapper(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((time.perf_counter() - started, sql))

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stock-cards", type=float, default=0.05, help="share of rows naming an unassigned card")
    parser.add_argument("--new-cards", type=float, default=0.10, help="share of rows naming an unknown card number")
    parser.add_argument("--import-export", type=int, default=0, metavar="N", help="also time django-import-export")
    C.add_common_args(parser)
    args = parser.parse_args()

    C.setup_django(force_db=args.force_db)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="bench-import-media-")
    from cards import importing
    from cards.models import MemberImport

    C.print_header(
        f"member import: {args.rows:,} new members with opening balances "
        f"({args.stock_cards:.0%} naming stock cards, {args.new_cards:.0%} new card numbers)"
    )
    C.reset_ledger()
    C.execute("TRUNCATE cards_memberimport, cards_card RESTART IDENTITY CASCADE")
    program = C.bench_program("bench-import")
    staff, _ = get_user_model().objects.get_or_create(username="bench-import", defaults={"is_staff": True})
    stock = create_stock(program, int(args.rows * args.stock_cards))
    data = make_file(program, args.rows, stock, args.new_cards)
    C.settle_database([*C.LEDGER_TABLES, "cards_card"])
    print(f"file: {len(data) / 1e6:.1f} MB, {args.rows:,} rows", flush=True)

    with C.Timer() as parse:
        parsed = importing.member_csv_parse(data)
    assert not parsed.errors, parsed.errors[:3]
    with C.Timer() as dry:
        member_import = importing.member_import_dry_run(program=program, file_name="bench.csv", data=data, actor=staff)
    assert member_import.status == MemberImport.Status.DRY_RUN, member_import.errors[:3]
    statements: list[tuple[float, str]] = []
    with connection.execute_wrapper(_timed(statements)), C.Timer() as apply:
        member_import = importing.member_import_apply(member_import=member_import, actor=staff)
    assert member_import.status == MemberImport.Status.APPLIED, member_import.errors[:3]
    summary = member_import.summary
    counts = C.db_counts()
    cards = C.scalar("SELECT count(*) FROM cards_card WHERE member_id IS NOT NULL")
    print(
        f"applied: {member_import.new_count:,} new members, {counts['entries']:,} opening-balance entries "
        f"({member_import.opening_balance_total:,} points), cards: {summary['cards_assigned']:,} assigned, "
        f"{summary['cards_registered']:,} registered, {summary['digital_cards']:,} digital ({cards:,} in use)",
        flush=True,
    )

    with C.Timer() as again_dry:
        again = importing.member_import_dry_run(program=program, file_name="bench.csv", data=data, actor=staff)
    with C.Timer() as again_apply:
        again = importing.member_import_apply(member_import=again, actor=staff)
    assert (again.new_count, again.updated_count, again.unchanged_count) == (0, 0, args.rows)
    assert C.db_counts() == counts

    copy_seconds = raw_copy(parsed.rows, program.id)
    problems, verify_seconds, first = C.ledger_check()

    rows = [
        ("parse + check rows (Python, no DB)", parse.seconds),
        ("dry run (parse, plan, record)", dry.seconds),
        ("apply (re-check + all writes, 1 transaction)", apply.seconds),
        ("dry run + apply", dry.seconds + apply.seconds),
        ("re-import: dry run", again_dry.seconds),
        ("re-import: apply (nothing written)", again_apply.seconds),
        ("raw COPY into a loyalty_member-shaped table", copy_seconds),
    ]
    table = [
        (label, f"{seconds:.2f}", f"{args.rows / seconds:,.0f}", f"{copy_seconds / seconds:.0%}")
        for label, seconds in rows
    ]
    if args.import_export:
        ie_seconds = import_export_dry_run(C.bench_program("bench-import-ie"), data, args.import_export)
        table.append(
            (
                f"django-import-export dry run, {args.import_export:,} rows (members only)",
                f"{ie_seconds:.2f}",
                f"{args.import_export / ie_seconds:,.0f}",
                f"{(copy_seconds / args.rows) / (ie_seconds / args.import_export):.1%}",
            )
        )
    C.print_table(("step", "seconds", "rows/s", "rate vs COPY"), table)
    phases: dict[str, float] = {}
    for seconds, sql in statements:
        phase = next((name for name, head in APPLY_PHASES if head in sql), "other statements")
        phases[phase] = phases.get(phase, 0.0) + seconds
    phases["the rest: Python (parse, plan, numbers), COPY, commit (deferred FK checks), on-commit signals"] = (
        apply.seconds - sum(s for s, _ in statements)
    )
    C.print_table(("apply, where the time goes", "seconds"), [(k, f"{v:.2f}") for k, v in phases.items()])
    print(f"ledger_problems(): {problems} ({verify_seconds:.1f} s){'' if not problems else ' ' + str(first)}")
    print(
        f"apply of {args.rows:,} rows: {apply.seconds:.1f} s (target < {TARGET_SECONDS:.0f} s): "
        f"{C.verdict(apply.seconds < TARGET_SECONDS)}; dry run + apply {dry.seconds + apply.seconds:.1f} s: "
        f"{C.verdict(dry.seconds + apply.seconds < TARGET_SECONDS)}"
    )
    print(f"load at the end: {C.load_snapshot()}")
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()
