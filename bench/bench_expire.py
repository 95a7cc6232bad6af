"""Expiry: `loyalty.services.points_expire` (chunked, one transaction per chunk) against ONE
hand-written set-based SQL statement doing the same work (zero the lots' remainders, one
expire entry per member, one allocation per lot, lower the members' balances), each on an
identical, freshly generated copy of the data. Target: service <= 2x the statement's time.

Data (generated in SQL, consistent with the ledger so verify_ledger passes): `--members`
members with `--lots` expired earn lots each (default 250,000 x 4 = 1,000,000 lots), expiry
dates spread over `--spread-days` past days (default 90: a backlog, a member's lots expired on
different days), and `--live-lots` unexpired lots each (default 0).

    .venv/bin/python bench/bench_expire.py [--members 250000] [--lots 4] [--chunk N] [--hold-xid]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TARGET_FACTOR = 2.0

# Lot k (1..L) of member m: id (m-1)*L + k, points 2..100, expired 1..spread days before NOW.
# Live lots (k > L) expire in the future. All released (available).
LOTS_SQL = """
INSERT INTO loyalty_ledgerentry (id, program_id, member_id, kind, points, remaining, created_at, occurred_at,
    available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, created_by_id)
SELECT i + 1, %(p)s, m, 'earn', pts, pts, t, t, t, t,
       CASE WHEN k <= %(lots)s THEN %(now)s - interval '1 day' * (1 + (m * 7 + k * 13) %% %(spread)s)
            ELSE %(now)s + interval '1 day' * (1 + (m * 7 + k * 13) %% 300) END,
       'bench lot', '', NULL, NULL, NULL
FROM generate_series(0, %(n)s * %(per)s - 1) AS i,
     LATERAL (SELECT i / %(per)s + 1 AS m, i %% %(per)s + 1 AS k) AS mk,
     LATERAL (SELECT 2 + ((m * 31 + k * 17) %% 99) AS pts,
                     %(now)s - interval '400 days' AS t) AS v
"""

# The same work as the service, as one statement over all due lots.
HAND_SQL = """
WITH due AS (
    SELECT id, member_id, program_id, remaining, released_at IS NOT NULL AS released
    FROM loyalty_ledgerentry
    WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= %(now)s
), zeroed AS (
    UPDATE loyalty_ledgerentry e SET remaining = 0 FROM due WHERE e.id = due.id
), per_member AS (
    SELECT member_id, program_id, sum(remaining) AS total,
           coalesce(sum(remaining) FILTER (WHERE released), 0) AS from_available,
           coalesce(sum(remaining) FILTER (WHERE NOT released), 0) AS from_pending
    FROM due GROUP BY member_id, program_id
), debits AS (
    INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, occurred_at,
                                     reason, reference)
    SELECT program_id, member_id, 'expire', -total, 0, %(now)s, %(now)s, 'Points expired', ''
    FROM per_member
    RETURNING id, member_id
), allocations AS (
    INSERT INTO loyalty_allocation (debit_id, lot_id, points, created_at)
    SELECT debits.id, due.id, due.remaining, %(now)s FROM due JOIN debits USING (member_id)
)
UPDATE loyalty_member m
SET available = m.available - p.from_available, pending = m.pending - p.from_pending,
    expired = m.expired + p.total
FROM per_member p WHERE m.id = p.member_id
"""

FINGERPRINT_SQL = """
SELECT
  (SELECT count(*) FROM loyalty_ledgerentry WHERE points > 0 AND remaining = 0) AS lots_zeroed,
  (SELECT count(*) FROM loyalty_ledgerentry WHERE points > 0 AND remaining > 0) AS lots_open,
  (SELECT coalesce(-sum(points), 0) FROM loyalty_ledgerentry WHERE kind = 'expire') AS points_expired,
  (SELECT count(DISTINCT member_id) FROM loyalty_ledgerentry WHERE kind = 'expire') AS members_expired,
  (SELECT count(*) FROM loyalty_ledgerentry WHERE kind = 'expire') AS expire_entries,
  (SELECT count(*) FROM loyalty_allocation) AS allocations,
  (SELECT coalesce(sum(points), 0) FROM loyalty_allocation) AS allocated_points,
  (SELECT sum(available) FROM loyalty_member) AS sum_available,
  (SELECT sum(expired) FROM loyalty_member) AS sum_expired
"""
# The number of expire entries may differ by design (the service writes one per member per chunk).
COMPARED = (
    "lots_zeroed",
    "lots_open",
    "points_expired",
    "members_expired",
    "allocations",
    "allocated_points",
    "sum_available",
    "sum_expired",
)


def load(program_id: int, members: int, lots: int, live: int, now: dt.datetime, spread: int = 90) -> float:
    per = lots + live
    with C.Timer() as t:
        C.reset_ledger()
        # Balances straight from the lot formula: available = lifetime = sum of all the lots.
        C.insert_members(
            program_id,
            members,
            {
                "available": f"(SELECT sum(2 + ((i * 31 + k * 17) %% 99)) FROM generate_series(1, {per}) AS k)",
                "lifetime_earned": f"(SELECT sum(2 + ((i * 31 + k * 17) %% 99)) FROM generate_series(1, {per}) AS k)",
            },
        )
        C.execute(LOTS_SQL, {"p": program_id, "n": members, "per": per, "lots": lots, "now": now, "spread": spread})
        C.fix_entry_sequence()
        C.settle_database(["loyalty_member", "loyalty_ledgerentry", "loyalty_allocation"])
    return t.seconds


def hold_xid():
    """A connection to the server's 'postgres' database holding a transaction with an xid."""
    import os

    import psycopg
    from psycopg.conninfo import make_conninfo

    conn = psycopg.connect(make_conninfo(os.environ["DATABASE_URL"], dbname="postgres"))
    conn.execute("SELECT txid_current()")
    return conn


def fingerprint() -> dict[str, int]:
    with C.cursor() as cur:
        cur.execute(FINGERPRINT_SQL)
        names = [d[0] for d in cur.description]
        return dict(zip(names, (int(v) for v in cur.fetchone()), strict=True))


def run_hand_sql(now: dt.datetime) -> float:
    from django.db import connection, transaction

    with C.Timer() as t, transaction.atomic(), connection.cursor() as cur:
        cur.execute(HAND_SQL, {"now": now})
    return t.seconds


def service_step(sql: str) -> str:
    text = sql.lstrip()
    if text.startswith("WITH due AS"):
        return "expire (_expire_lots_sql)"
    if text.startswith("SELECT id FROM loyalty_member"):
        return "lock members"
    if "ORDER BY expires_at LIMIT" in text:
        return "pick due lots"
    return "other"


def run_service(now: dt.datetime, chunk: int, breakdown: dict[str, list[float]] | None = None):
    """points_expire, timed; `breakdown` collects the seconds spent in each kind of statement
    (commit included under "commit + rest": the statements run in autocommit-less atomic blocks)."""
    from django.db import connection

    from loyalty.services import points_expire

    def wrapper(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if breakdown is not None:
                breakdown.setdefault(service_step(sql), []).append(time.perf_counter() - t0)

    with connection.execute_wrapper(wrapper), C.Timer() as t:
        result = points_expire(now=now, chunk_size=chunk)
    return t.seconds, result


def check(label: str) -> tuple[int, float]:
    problems, seconds, first = C.ledger_check()
    status = "OK" if not problems else f"{problems} PROBLEMS, e.g. {first}"
    print(f"  verify ({label}): {status} in {seconds:.1f} s", flush=True)
    if problems:
        raise SystemExit(f"ledger_problems() after {label}: {first}")
    return problems, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=250_000)
    parser.add_argument("--lots", type=int, default=4, help="expired lots per member")
    parser.add_argument("--live-lots", type=int, default=0, help="unexpired lots per member (not touched)")
    parser.add_argument("--chunk", type=int, default=None, help="points_expire chunk_size (default: the service's own)")
    parser.add_argument(
        "--spread-days",
        type=int,
        default=90,
        help="expiry dates spread over this many past days (1: all of a member's lots expire together)",
    )
    parser.add_argument("--order", choices=("sql-first", "service-first"), default="sql-first")
    parser.add_argument("--no-verify-before", action="store_true", help="skip verify on the fresh data")
    parser.add_argument(
        "--hold-xid",
        action="store_true",
        help="diagnostic: keep a transaction with an xid open in the 'postgres' database during both runs "
        "(like a long report, pg_dump or another application's transaction on the same server)",
    )
    C.add_common_args(parser)
    args = parser.parse_args()

    C.setup_django(force_db=args.force_db)
    if args.chunk is None:
        import inspect

        from loyalty.services import points_expire

        args.chunk = inspect.signature(points_expire).parameters["chunk_size"].default
    total = args.members * args.lots
    C.print_header(
        f"expire: {total:,} expired lots ({args.members:,} members x {args.lots}"
        f" + {args.live_lots} live lots each), service chunk_size={args.chunk}"
        + (", DIAGNOSTIC: an xid held open in another database" if args.hold_xid else "")
    )
    program = C.bench_program("bench-expire", expiry_days=365, pending_days=0)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    timings: dict[str, float] = {}
    prints: dict[str, dict[str, int]] = {}
    verify_seconds: dict[str, float] = {}
    job = None
    breakdown: dict[str, list[float]] = {}
    order = ["sql", "service"] if args.order == "sql-first" else ["service", "sql"]
    for which in order:
        seconds = load(program.id, args.members, args.lots, args.live_lots, now, args.spread_days)
        counts = C.db_counts()
        print(
            f"[{which}] loaded {counts['entries']:,} entries for {counts['members']:,} members in {seconds:.1f} s "
            f"(incl. VACUUM ANALYZE, CHECKPOINT)   [{C.load_snapshot()}]",
            flush=True,
        )
        if not args.no_verify_before:
            _p, verify_seconds[f"before {which}"] = check("fresh data")
            C.execute("CHECKPOINT")
        holder = hold_xid() if args.hold_xid else None
        if which == "sql":
            timings["sql"] = run_hand_sql(now)
            print(f"[sql] one statement: {timings['sql']:.2f} s", flush=True)
        else:
            timings["service"], job = run_service(now, args.chunk, breakdown)
            print(
                f"[service] points_expire: {timings['service']:.2f} s, {job.chunks} chunks, "
                f"{job.lots:,} lots, {job.members:,} members, {job.points:,} points",
                flush=True,
            )
        if holder is not None:
            holder.close()
        prints[which] = fingerprint()
        counts = C.db_counts()
        _p, verify_seconds[f"after {which}"] = check(f"after {which}, {counts['entries']:,} entries")
        if which == "service":
            again = run_service(now, args.chunk)[1]
            print(f"  second points_expire run: {again.lots} lots (idempotent: {again.lots == 0})")

    print()
    print(f"RESULT (b) expire {total:,} lots of {args.members:,} members:")
    rows = [
        ("hand-written SQL (1 statement)", f"{timings['sql']:.2f}", f"{total / timings['sql']:,.0f}", "1"),
        (
            f"service points_expire (chunk {args.chunk})",
            f"{timings['service']:.2f}",
            f"{total / timings['service']:,.0f}",
            str(job.chunks if job else "?"),
        ),
    ]
    C.print_table(["path", "seconds", "lots/s", "transactions"], rows)
    steps = [
        (name, len(v), f"{sum(v):.2f}", f"{sum(v) / len(v) * 1000:.1f}", f"{v[0] * 1000:.1f}", f"{v[-1] * 1000:.1f}")
        for name, v in breakdown.items()
    ]
    accounted = sum(sum(v) for v in breakdown.values())
    steps.append(("commits + Python (rest)", "", f"{timings['service'] - accounted:.2f}", "", "", ""))
    print("where the service's time goes:")
    C.print_table(["statement", "count", "seconds", "ms each", "first ms", "last ms"], steps)
    factor = timings["service"] / timings["sql"]
    size_note = "" if total >= 1_000_000 else " (the target is set for 1,000,000 lots)"
    print(
        f"ratio service/sql = {factor:.2f}x  target <= {TARGET_FACTOR:g}x: "
        f"{C.verdict(factor <= TARGET_FACTOR)}{size_note}"
    )
    same = all(prints["sql"][k] == prints["service"][k] for k in COMPARED)
    print(f"same result as the statement ({', '.join(COMPARED)}): {'yes' if same else 'NO'}")
    C.print_table(
        ["", "sql", "service"], [(k, f"{prints['sql'][k]:,}", f"{prints['service'][k]:,}") for k in prints["sql"]]
    )
    passed = ", ".join(f"{k} ({v:.1f} s)" for k, v in verify_seconds.items())
    print(f"verify_ledger (ledger_problems()) passed: {passed}")
    print(f"end: [{C.load_snapshot()}]")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
