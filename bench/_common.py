"""Shared helpers of the benchmarks in bench/ (not part of the test suite).

Every benchmark TRUNCATEs the loyalty tables of the database named by DATABASE_URL, so a
benchmark refuses to run unless that database's name contains "bench" (or --force-db is given).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tables the ledger benchmarks own. TRUNCATE is allowed by the append-only trigger (it is not a
# row-level DELETE); CASCADE also empties other apps' tables that point at members/entries.
LEDGER_TABLES = (
    "loyalty_allocation",
    "loyalty_idempotencyrecord",
    "loyalty_ledgerentry",
    "loyalty_activity",
    "loyalty_member",
    "loyalty_ledgerjobrun",
)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force-db",
        action="store_true",
        help="Run even if the database name does not contain 'bench' (its loyalty tables are TRUNCATEd).",
    )


def setup_django(*, force_db: bool = False, migrate: bool = True) -> None:
    """django.setup() with the test settings and DATABASE_URL from the environment."""
    if not os.environ.get("DATABASE_URL"):
        sys.exit(
            "Set DATABASE_URL, e.g. export DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench "
            "(the benchmark TRUNCATEs its loyalty tables)."
        )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if "bench" not in name and not force_db:
        sys.exit(f"Refusing to TRUNCATE tables of database {name!r}: use a database named *bench* or --force-db.")
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def cursor():
    from django.db import connection

    return connection.cursor()


def scalar(sql: str, params: Any = None) -> Any:
    with cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def execute(sql: str, params: Any = None) -> None:
    with cursor() as cur:
        cur.execute(sql, params)


def reset_ledger() -> None:
    """Empty members, entries, allocations, idempotency records, activities, job runs."""
    execute(f"TRUNCATE {', '.join(LEDGER_TABLES)} RESTART IDENTITY CASCADE")


def bench_program(slug: str = "bench", **fields: Any):
    from loyalty.models import Program

    defaults = {"name": "Bench", "expiry_days": 365, "pending_days": 0, "timezone": "UTC", **fields}
    program, _ = Program.objects.update_or_create(slug=slug, defaults=defaults)
    return program


def insert_members(program_id: int, count: int, balances_sql: dict[str, str] | None = None) -> None:
    """`count` active members with ids 1..count (call `reset_ledger` first). `balances_sql`
    gives SQL expressions of the series value `i` (the member id) for balance columns."""
    cols = {"available": "0", "pending": "0", "lifetime_earned": "0", "redeemed": "0", "expired": "0"}
    cols.update(balances_sql or {})
    execute(
        "INSERT INTO loyalty_member (id, program_id, external_id, email, first_name, last_name, birthday, "
        "referral_code, referred_by_id, status, enrollment_channel, email_consent, user_id, enrolled_at, "
        f"{', '.join(cols)}) "
        "SELECT i, %(p)s, 'bench-' || i, 'm' || i || '@bench.invalid', 'Bench', 'Member ' || i, NULL, "
        "'B' || i, NULL, 'active', 'import', false, NULL, now() - interval '400 days', "
        f"{', '.join(cols.values())} FROM generate_series(1, %(n)s) AS i",
        {"p": program_id, "n": count},
    )
    execute("SELECT setval(pg_get_serial_sequence('loyalty_member', 'id'), %s)", [max(count, 1)])


def fix_entry_sequence() -> None:
    execute(
        "SELECT setval(pg_get_serial_sequence('loyalty_ledgerentry', 'id'), "
        "coalesce((SELECT max(id) FROM loyalty_ledgerentry), 0) + 1, false)"
    )
    execute(
        "SELECT setval(pg_get_serial_sequence('loyalty_allocation', 'id'), "
        "coalesce((SELECT max(id) FROM loyalty_allocation), 0) + 1, false)"
    )


def settle_database(tables: Iterable[str] = LEDGER_TABLES) -> None:
    """VACUUM ANALYZE (hint bits, visibility map, statistics) and CHECKPOINT, so that a timed
    run starts from the same state and doesn't pay for the load's dirty pages."""
    from django.db import connection

    with connection.cursor() as cur:
        for table in tables:
            cur.execute(f"VACUUM (ANALYZE) {table}")
        with contextlib.suppress(Exception):  # not superuser: fine, only less repeatable
            cur.execute("CHECKPOINT")


def ledger_check(label: str = "") -> tuple[int, float, list[str]]:
    """Run `ledger_problems()` (what `manage.py verify_ledger` runs): (problems, seconds, first few)."""
    from loyalty.selectors import ledger_problems

    started = time.perf_counter()
    problems = []
    count = 0
    for problem in ledger_problems():
        count += 1
        if len(problems) < 5:
            problems.append(str(problem))
    return count, time.perf_counter() - started, problems


def db_counts() -> dict[str, int]:
    with cursor() as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM loyalty_member), (SELECT count(*) FROM loyalty_ledgerentry), "
            "(SELECT count(*) FROM loyalty_allocation)"
        )
        members, entries, allocations = cur.fetchone()
    return {"members": members, "entries": entries, "allocations": allocations}


def machine_info() -> dict[str, str]:
    info: dict[str, str] = {"nproc": str(os.cpu_count())}
    with contextlib.suppress(OSError, StopIteration):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        info["ram"] = f"{mem_kb / 1024 / 1024:.1f} GiB"
    with cursor() as cur:
        cur.execute("SELECT version()")
        info["postgresql"] = cur.fetchone()[0]
        for setting in ("shared_buffers", "work_mem", "synchronous_commit", "max_wal_size"):
            cur.execute(f"SHOW {setting}")
            info[setting] = cur.fetchone()[0]
    return info


def code_version() -> str:
    """The commit measured, and whether the ledger code differs from it (shared working tree)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    changed = git("status", "--porcelain", "--", "loyalty/services/", "loyalty/selectors.py", "loyalty/models.py")
    files = [line.split(maxsplit=1)[-1] for line in changed.splitlines() if line.strip()]
    state = "uncommitted changes in " + ", ".join(files) if files else "clean"
    return f"git {git('rev-parse', '--short', 'HEAD')} (ledger code: {state})"


def load_snapshot() -> str:
    """Load average and busy backends of *other* databases: other load on the machine."""
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    busy = scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' "
        "AND datname IS DISTINCT FROM current_database()"
    )
    return f"loadavg {load}; active queries in other databases: {busy}"


def print_header(title: str) -> None:
    info = machine_info()
    print(f"== {title} ==")
    print(f"machine: {info.get('nproc')} CPUs, {info.get('ram', '?')} RAM")
    print(f"server:  {info['postgresql']}")
    print(
        f"         shared_buffers={info['shared_buffers']} work_mem={info['work_mem']} "
        f"synchronous_commit={info['synchronous_commit']} max_wal_size={info['max_wal_size']}"
    )
    print(f"code:    {code_version()}")
    print(f"load:    {load_snapshot()}")
    print(f"started: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}")
    print()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    print()


def verdict(hit: bool) -> str:
    return "HIT" if hit else "MISS"


class Timer:
    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
