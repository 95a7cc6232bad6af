"""The member page (issue 13 §4) for a member with 100,000 ledger entries: the whole page, and
the ledger section paged by keyset (first page, a page deep in the history, filtered by a rare
kind and by a day range). Times are the median of N requests through Django's test client
(in-process, no HTTP server), with the statements each request ran.

The entries are synthetic rows written by SQL (credits and redemptions spread over ~70 days;
the member's cached balances are not kept in step: `verify_ledger` would report them), plus
10,000 other members with 10 entries each so the member's rows are not the whole table.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench
    .venv/bin/python bench/bench_member_page.py [--entries 100000] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import (
    add_common_args,
    bench_program,
    execute,
    fix_entry_sequence,
    insert_members,
    print_header,
    print_table,
    reset_ledger,
    settle_database,
    setup_django,
)

OTHERS = 10_000


def load(entries: int) -> int:
    program = bench_program(slug="bench-member-page")
    reset_ledger()
    insert_members(program.pk, OTHERS + 1)
    # The member under test is member 1: `entries` rows, one in 25 a redemption.
    execute(
        "INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, occurred_at, "
        "available_at, released_at, expires_at, reason, reference) "
        "SELECT %(p)s, 1, CASE WHEN i %% 25 = 0 THEN 'redeem' ELSE 'earn' END, "
        "CASE WHEN i %% 25 = 0 THEN -5 ELSE 10 END, CASE WHEN i %% 25 = 0 THEN 0 ELSE 10 END, "
        "now() - (%(n)s - i) * interval '1 minute', now() - (%(n)s - i) * interval '1 minute', "
        "CASE WHEN i %% 25 = 0 THEN NULL ELSE now() - (%(n)s - i) * interval '1 minute' END, "
        "CASE WHEN i %% 25 = 0 THEN NULL ELSE now() - (%(n)s - i) * interval '1 minute' END, "
        "CASE WHEN i %% 25 = 0 THEN NULL ELSE now() + interval '300 days' END, 'Visit ' || i, '' "
        "FROM generate_series(1, %(n)s) AS i",
        {"p": program.pk, "n": entries},
    )
    execute(
        "INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, occurred_at, "
        "available_at, released_at, expires_at, reason, reference) "
        "SELECT %(p)s, m, 'earn', 10, 10, now() - k * interval '1 day', now() - k * interval '1 day', "
        "now() - k * interval '1 day', now() - k * interval '1 day', now() + interval '300 days', 'Visit', '' "
        "FROM generate_series(2, %(m)s) AS m, generate_series(1, 10) AS k",
        {"p": program.pk, "m": OTHERS + 1},
    )
    execute("UPDATE loyalty_member SET available = %s WHERE id = 1", [entries * 9])
    fix_entry_sequence()
    settle_database()
    return program.pk


def timed(client, url: str, params: dict, runs: int) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    statements = 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url, params)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
        statements = len(queries)
    return statistics.median(times), max(times), statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    setup_django(force_db=args.force_db)

    from django.contrib.auth import get_user_model
    from django.test import Client

    from loyalty.models import LedgerEntry

    print_header(f"Member page, one member with {args.entries:,} entries")
    started = time.perf_counter()
    load(args.entries)
    print(f"loaded in {time.perf_counter() - started:.1f} s")
    User = get_user_model()
    user = User.objects.filter(username="bench-staff").first() or User.objects.create_superuser(
        "bench-staff", "bench@bench.invalid", "bench"
    )
    client = Client()
    client.force_login(user)
    oldest = LedgerEntry.objects.filter(member_id=1).order_by("id").values_list("id", flat=True)[100]
    day = (LedgerEntry.objects.get(pk=oldest).created_at).date().isoformat()
    page, ledger = "/admin/dashboard/members/1/", "/admin/dashboard/members/1/ledger/"
    rows = []
    for label, url, params in (
        ("whole page (every section)", page, {}),
        ("ledger, first page", ledger, {}),
        ("ledger, a page 99.9 % deep (before=...)", ledger, {"before": oldest}),
        ("ledger, kind=redeem (1 in 25)", ledger, {"kind": "redeem"}),
        ("ledger, kind=adjust (none: the whole history)", ledger, {"kind": "adjust"}),
        ("ledger, one day 69 days back", ledger, {"since": day, "until": day}),
    ):
        median, worst, statements = timed(client, url, params, args.runs)
        rows.append((label, f"{median:.1f}", f"{worst:.1f}", statements))
    print_table(("request", "median ms", "max ms", "statements"), rows)


if __name__ == "__main__":
    main()
