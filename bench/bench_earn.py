"""Earn throughput: `loyalty.services.points_earn` (idempotency key per post, as the API posts)
against raw SQL doing the minimum (per post, one transaction: SELECT ... FOR UPDATE of the
member's balance, INSERT of the entry, UPDATE of the balance), N parallel processes with one
connection each, posts spread randomly over the members. Target: service >= 40% of raw.

Then profiles one service process alone: statements per post, time in the database vs in
Python, the server's planning/execution time of each statement, and a cProfile summary.

    .venv/bin/python bench/bench_earn.py [--members 10000] [--procs 8] [--seconds 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import io
import multiprocessing as mp
import os
import pstats
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TARGET_RATIO = 0.40
MODES = {
    "raw": "raw SQL: BEGIN; SELECT .. FOR UPDATE; INSERT entry; UPDATE balance; COMMIT (psycopg)",
    "service": "points_earn(..., idempotency_key=unique) through Django",
    "service_nokey": "points_earn(...) without an idempotency key (diagnostic)",
    "service_prepared": "EXPERIMENT: points_earn (key) with loyalty.services' cursors server-side bound and "
    "prepared (see use_prepared_cursors)",
}

RAW_LOCK = "SELECT available, pending, lifetime_earned FROM loyalty_member WHERE id = %s FOR UPDATE"
RAW_INSERT = (
    "INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, occurred_at, "
    "available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, created_by_id) "
    "VALUES (%s, %s, 'earn', %s, %s, %s, %s, %s, %s, %s, %s, '', NULL, NULL, NULL) RETURNING id"
)
RAW_UPDATE = (
    "UPDATE loyalty_member SET available = available + %s, lifetime_earned = lifetime_earned + %s WHERE id = %s"
)


# --------------------------------------------------------------------------------------------
# Posting functions (one per mode), used by the workers and by the single-process profile.


def make_raw_poster(program_id: int, expiry_days: int):
    """A function posting one earn with raw SQL over its own psycopg connection."""
    import psycopg

    extra = {"options": "-c synchronous_commit=off"} if os.environ.get("BENCH_ASYNC_COMMIT") else {}
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True, **extra)
    cur = conn.cursor()
    expiry = dt.timedelta(days=expiry_days)

    def post(member_id: int, points: int, key: str) -> None:
        now = dt.datetime.now(dt.UTC)
        with conn.transaction():
            cur.execute(RAW_LOCK, (member_id,))
            cur.fetchone()
            cur.execute(RAW_INSERT, (program_id, member_id, points, points, now, now, now, now, now + expiry, "bench"))
            cur.fetchone()
            cur.execute(RAW_UPDATE, (points, points, member_id))

    post.conn = conn  # type: ignore[attr-defined]
    return post


def make_service_poster(program_id: int, with_key: bool):
    from loyalty.models import Program
    from loyalty.services import points_earn

    program = Program.objects.get(id=program_id)

    def post(member_id: int, points: int, key: str) -> None:
        points_earn(
            program=program,
            member_id=member_id,
            points=points,
            reason="bench",
            idempotency_key=key if with_key else None,
        )

    return post


def use_prepared_cursors() -> None:
    """EXPERIMENT for a proposed change to loyalty/services.py (nothing is changed on disk):
    give `loyalty.services` cursors that bind parameters on the server and prepare each
    statement (psycopg `prepare=True`; needs the connection's prepare_threshold not None),
    still wrapped by Django's CursorWrapper (execute wrappers and query counting keep
    working). The single-statement earn is then parsed and planned once per connection
    instead of once per post. Done here by replacing the module's `connection` with a proxy,
    in this process only."""
    import psycopg
    from django.db import connection
    from django.db.backends.utils import CursorWrapper

    import loyalty.services.posting

    class PreparedCursor(psycopg.Cursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    class PreparedConnection:
        def __getattr__(self, name: str) -> Any:
            return getattr(connection, name)

        def cursor(self) -> CursorWrapper:
            connection.ensure_connection()
            pg = connection.connection
            if pg.prepare_threshold is None:
                # Django passes prepare_threshold=None (never prepare) unless OPTIONS says
                # otherwise; Django's own cursors bind client-side and never prepare anyway.
                pg.prepare_threshold = 5
            return CursorWrapper(PreparedCursor(pg), connection)

    loyalty.services.posting.connection = PreparedConnection()


def make_poster(mode: str, program_id: int, expiry_days: int):
    if mode == "raw":
        return make_raw_poster(program_id, expiry_days)
    if mode == "service_prepared":
        use_prepared_cursors()
    return make_service_poster(program_id, with_key=(mode == "service"))


# --------------------------------------------------------------------------------------------
# The parallel run


def worker(
    mode: str,
    wid: int,
    tag: str,
    program_id: int,
    expiry_days: int,
    lo: int,
    hi: int,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    try:
        C.setup_django(force_db=True, migrate=False)
        apply_diagnostic_options()
        post = make_poster(mode, program_id, expiry_days)
        rng = random.Random(f"{tag}-{wid}")
        for i in range(20):  # warm-up: connection, caches, psycopg prepared statements
            post(rng.randint(lo, hi), rng.randint(1, 500), f"{tag}-w{wid}-warm{i}")
        backend = backend_pid(mode, post)
        barrier.wait()
        cpu0 = (time.process_time(), proc_cpu_seconds(backend))
        latencies = []
        started = time.perf_counter()
        deadline = started + seconds
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            post(rng.randint(lo, hi), rng.randint(1, 500), f"{tag}-w{wid}-{i}")
            latencies.append(time.perf_counter() - t0)
            i += 1
        elapsed = time.perf_counter() - started
        cpu = (time.process_time() - cpu0[0], proc_cpu_seconds(backend) - cpu0[1])
        results.put((wid, i, elapsed, latencies, cpu))
    except BaseException as exc:  # report, don't hang the parent
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put((wid, -1, 0.0, repr(exc), None))
        raise


def backend_pid(mode: str, post: Any) -> int:
    if mode == "raw":
        return post.conn.info.backend_pid
    from django.db import connection

    return connection.connection.info.backend_pid


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (here: the PostgreSQL backend serving a worker), from
    /proc (same machine); NaN when it can't be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def apply_diagnostic_options() -> None:
    """Diagnostics, passed to the workers through the environment:
    BENCH_SERVER_BINDING=1: Django's psycopg3 server-side binding (OPTIONS server_side_binding)
    with OPTIONS prepare_threshold=5, so psycopg prepares a statement on its 5th run on a
    connection, as it does for the raw baseline (plain psycopg's default);
    BENCH_ASYNC_COMMIT=1: synchronous_commit=off on the benchmark's own sessions (raw and
    service alike), which takes the WAL flush (fsync) out of every commit."""
    from django.db import connection

    options = connection.settings_dict.setdefault("OPTIONS", {})
    changed = False
    if os.environ.get("BENCH_SERVER_BINDING"):
        options["server_side_binding"] = True
        options["prepare_threshold"] = 5  # Django's default None never prepares
        changed = True
    if os.environ.get("BENCH_ASYNC_COMMIT"):
        options["options"] = "-c synchronous_commit=off"
        changed = True
    if changed:
        connection.close()


def reset_postings(members: int) -> None:
    """Back to: `members` members, no entries, zero balances (identical start for every run)."""
    C.execute("TRUNCATE loyalty_allocation, loyalty_idempotencyrecord, loyalty_ledgerentry RESTART IDENTITY CASCADE")
    C.execute(
        "UPDATE loyalty_member SET available = 0, pending = 0, lifetime_earned = 0, redeemed = 0, expired = 0 "
        "WHERE available <> 0 OR pending <> 0 OR lifetime_earned <> 0 OR redeemed <> 0 OR expired <> 0"
    )
    C.settle_database(["loyalty_member", "loyalty_ledgerentry", "loyalty_idempotencyrecord"])


def run_parallel(
    mode: str, *, procs: int, program_id: int, expiry_days: int, members: int, seconds: float, tag: str
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=worker,
            args=(mode, w, tag, program_id, expiry_days, 1, members, seconds, barrier, results),
        )
        for w in range(procs)
    ]
    for p in workers:
        p.start()
    got = [results.get(timeout=seconds + 300) for _ in workers]
    for p in workers:
        p.join()
    failed = [g for g in got if g[1] < 0]
    if failed:
        raise SystemExit(f"{mode}: worker failed: {failed[0][3]}")
    posts = sum(g[1] for g in got)
    elapsed = max(g[2] for g in got)
    lat = sorted(x for g in got for x in g[3])
    return {
        "client_cpu_ms": sum(g[4][0] for g in got) / posts * 1000,
        "server_cpu_ms": sum(g[4][1] for g in got) / posts * 1000,
        "mode": mode,
        "posts": posts,
        "seconds": elapsed,
        "rate": posts / elapsed,
        "p50": lat[len(lat) // 2] * 1000,
        "p99": lat[int(len(lat) * 0.99)] * 1000,
    }


# --------------------------------------------------------------------------------------------
# Single-process profile


class StatementLog:
    """connection.execute_wrapper: counts statements and the time spent inside execute()."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.kinds: Counter[str] = Counter()
        self.samples: dict[str, tuple[str, Any]] = {}

    def __call__(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - t0
            self.count += 1
            head = " ".join(sql.split()[:3])[:60]
            self.kinds[head] += 1
            self.samples.setdefault(head, (sql, params))


def explain_times(sql: str, params: Any) -> tuple[float, float]:
    """Server planning and execution time (ms) of one statement, rolled back."""
    from django.db import connection, transaction

    class _Rollback(Exception):
        pass

    out: list[str] = []
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, SUMMARY, TIMING OFF) " + sql, params)
            out = [r[0] for r in cur.fetchall()]
            raise _Rollback
    except _Rollback:
        pass
    plan = next((float(x.split(":")[1].split()[0]) for x in out if x.startswith("Planning Time")), float("nan"))
    exe = next((float(x.split(":")[1].split()[0]) for x in out if x.startswith("Execution Time")), float("nan"))
    return plan, exe


def profile_service(program_id: int, expiry_days: int, members: int, posts: int, tag: str) -> None:
    from django.db import connection

    print(f"-- profile: one process alone, {posts} posts each (no other posting process) --")
    rng = random.Random(7)
    picks = [(rng.randint(1, members), rng.randint(1, 500)) for _ in range(posts)]

    def timed(poster: Any, name: str, backend: int | None = None) -> tuple[float, StatementLog, float, float]:
        """ms/post, the statement log, client and server CPU ms/post of `posts` posts."""
        for i, (m, p) in enumerate(picks[:50]):
            poster(m, p, f"{tag}-{name}warm{i}")
        if backend is None:
            backend = backend_pid("service", poster)
        log = StatementLog()
        cpu0 = (time.process_time(), proc_cpu_seconds(backend))
        with connection.execute_wrapper(log):
            t0 = time.perf_counter()
            for i, (m, p) in enumerate(picks):
                poster(m, p, f"{tag}-{name}{i}")
            ms = (time.perf_counter() - t0) / posts * 1000
        client = (time.process_time() - cpu0[0]) / posts * 1000
        server = (proc_cpu_seconds(backend) - cpu0[1]) / posts * 1000
        return ms, log, client, server

    headers = ["path", "ms/post", "statements/post", "ms in execute()", "ms Python outside", "CPU client/server ms"]
    rows = []
    raw = make_raw_poster(program_id, expiry_days)  # psycopg, no Django: no execute() wrapper
    ms, _log, client, server = timed(raw, "raw", raw.conn.info.backend_pid)  # type: ignore[attr-defined]
    raw.conn.close()  # type: ignore[attr-defined]
    rows.append(("raw SQL (psycopg)", f"{ms:.3f}", "5 (BEGIN, 3, COMMIT)", "-", "-", f"{client:.3f} / {server:.3f}"))
    log = StatementLog()
    for label, with_key, name in (
        ("service points_earn, no key", False, "nokey"),
        ("service points_earn (key)", True, "svc"),
    ):
        ms, log, client, server = timed(make_service_poster(program_id, with_key=with_key), name)
        db_ms = log.seconds / posts * 1000
        rows.append(
            (
                label,
                f"{ms:.3f}",
                f"{log.count / posts:.2f}",
                f"{db_ms:.3f}",
                f"{ms - db_ms:.3f}",
                f"{client:.3f} / {server:.3f}",
            )
        )
    C.print_table(headers, rows)
    service = make_service_poster(program_id, with_key=True)

    print("statements issued by the service (per post):")
    for head, n in log.kinds.most_common():
        print(f"  {n / posts:5.2f} x  {head} ...")
    print()

    # Server-side planning vs execution of each statement, one sample each, rolled back.
    erows = []
    for head, (sql, params) in log.samples.items():
        if not sql.lstrip().upper().startswith(("WITH", "SELECT", "INSERT", "UPDATE")):
            continue
        if isinstance(params, dict) and "key" in params:
            params = {**params, "key": f"{tag}-explain"}
        plan, exe = explain_times(sql, params)
        erows.append((f"service: {head}", f"{plan:.3f}", f"{exe:.3f}"))
    now = dt.datetime.now(dt.UTC)
    m = picks[0][0]
    for name, sql, params in (
        ("raw: lock", RAW_LOCK, [m]),
        ("raw: insert", RAW_INSERT, [program_id, m, 5, 5, now, now, now, now, now, "bench"]),
        ("raw: update", RAW_UPDATE, [5, 5, m]),
    ):
        plan, exe = explain_times(sql, params)
        erows.append((name, f"{plan:.3f}", f"{exe:.3f}"))
    print("server time per statement (EXPLAIN ANALYZE, one sample, rolled back; ms):")
    C.print_table(["statement", "planning", "execution"], erows)

    # cProfile of the service loop.
    prof = cProfile.Profile()
    prof.enable()
    for i, (m, p) in enumerate(picks):
        service(m, p, f"{tag}-prof{i}")
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)
    print(f"cProfile of {posts} service posts (cProfile inflates Python time; read the shares):")
    keep = []
    for line in buf.getvalue().splitlines():
        if line.strip() and not line.startswith(("   Ordered by", "   List reduced")):
            keep.append(line)
    print("\n".join(keep))
    print()

    # The proposed change, measured the same way (process-local monkeypatch, see use_prepared_cursors).
    use_prepared_cursors()
    ms, log, client, server = timed(make_service_poster(program_id, with_key=True), "prep")
    db_ms = log.seconds / posts * 1000
    print("EXPERIMENT: the same posts with loyalty.services' statements server-bound and prepared:")
    C.print_table(
        headers,
        [
            (
                "service points_earn (key), prepared",
                f"{ms:.3f}",
                f"{log.count / posts:.2f}",
                f"{db_ms:.3f}",
                f"{ms - db_ms:.3f}",
                f"{client:.3f} / {server:.3f}",
            )
        ],
    )


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=8, help="parallel processes, one connection each")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternate the modes this many times")
    parser.add_argument("--modes", default="raw,service", help=f"comma list of {', '.join(MODES)}")
    parser.add_argument(
        "--server-side-binding",
        action="store_true",
        help="diagnostic: run the service with Django's OPTIONS server_side_binding=True, prepare_threshold=5",
    )
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="diagnostic: synchronous_commit=off in the benchmark's sessions (no fsync per commit)",
    )
    parser.add_argument("--profile-posts", type=int, default=2000, help="posts in the single-process profile (0: skip)")
    C.add_common_args(parser)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            parser.error(f"unknown mode {m!r}")

    if args.server_side_binding:
        os.environ["BENCH_SERVER_BINDING"] = "1"
    if args.async_commit:
        os.environ["BENCH_ASYNC_COMMIT"] = "1"
    C.setup_django(force_db=args.force_db)
    apply_diagnostic_options()
    C.print_header(f"earn throughput: {args.procs} processes, {args.members} members, {args.seconds:g} s per run")
    for m in modes:
        print(f"  {m:14s} {MODES[m]}")
    if args.server_side_binding:
        print("  DIAGNOSTIC: the service runs with OPTIONS server_side_binding=True, prepare_threshold=5")
    if args.async_commit:
        print("  DIAGNOSTIC: synchronous_commit=off in every benchmark session (commits don't wait for fsync)")
    print()

    C.reset_ledger()
    program = C.bench_program("bench-earn", expiry_days=365, pending_days=0)
    C.insert_members(program.id, args.members)
    tag = f"b{int(time.time())}"

    runs = []
    for r in range(args.rounds):
        for mode in modes:
            reset_postings(args.members)
            before = C.load_snapshot()
            res = run_parallel(
                mode,
                procs=args.procs,
                program_id=program.id,
                expiry_days=program.expiry_days,
                members=args.members,
                seconds=args.seconds,
                tag=f"{tag}-r{r}-{mode}",
            )
            res["round"] = r + 1
            res["load"] = before
            runs.append(res)
            print(
                f"round {r + 1} {mode:14s} {res['posts']:8d} posts in {res['seconds']:.1f} s = "
                f"{res['rate']:8.0f} posts/s  p50 {res['p50']:.2f} ms  p99 {res['p99']:.2f} ms  "
                f"CPU/post client {res['client_cpu_ms']:.3f} ms server {res['server_cpu_ms']:.3f} ms   [{before}]",
                flush=True,
            )
            problems, _seconds, first = C.ledger_check()
            if problems:
                raise SystemExit(f"verify failed after {mode}: {problems} problems, e.g. {first}")
    print()

    rows = []
    agg = {}
    for mode in modes:
        mine = [x for x in runs if x["mode"] == mode]
        rate = sum(x["posts"] for x in mine) / sum(x["seconds"] for x in mine)
        agg[mode] = rate
        rows.append(
            (
                mode,
                f"{rate:.0f}",
                " / ".join(f"{x['rate']:.0f}" for x in mine),
                f"{statistics.median(x['p50'] for x in mine):.2f}",
                f"{statistics.median(x['p99'] for x in mine):.2f}",
                f"{statistics.median(x['client_cpu_ms'] for x in mine):.3f}",
                f"{statistics.median(x['server_cpu_ms'] for x in mine):.3f}",
            )
        )
    print(f"RESULT (a) earn, {args.procs} parallel connections, {args.members} members:")
    C.print_table(
        ["mode", "posts/s", "per round", "p50 ms", "p99 ms", "client CPU ms/post", "server CPU ms/post"], rows
    )
    print(
        "(CPU per post: the workers' own CPU and their PostgreSQL backends' CPU (/proc), summed over the\n"
        f" processes; with {os.cpu_count()} CPUs, (client + server) x posts/s can't exceed {os.cpu_count()}000 ms/s)"
    )
    if "raw" in agg:
        for mode in modes:
            if mode == "raw":
                continue
            ratio = agg[mode] / agg["raw"]
            target = ""
            if mode == "service":
                target = f"target >= {TARGET_RATIO:.0%}: {C.verdict(ratio >= TARGET_RATIO)}"
                if (args.procs, args.members) != (8, 10_000):
                    target += " (the target is set for 8 connections and 10,000 members)"
            print(f"ratio {mode}/raw = {ratio:.2f} ({ratio:.0%})  {target}")
    print("ledger verified (ledger_problems() == 0) after every run")
    print()

    if args.profile_posts:
        reset_postings(args.members)
        profile_service(program.id, program.expiry_days, args.members, args.profile_posts, f"{tag}-p")


if __name__ == "__main__":
    main()
