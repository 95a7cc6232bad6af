"""Activity throughput over HTTP: `POST /api/v1/activities` (purchases, 5 active earning rules,
3 tiers) served by gunicorn on this machine, against the raw ledger post of bench_earn.py
(per post, one transaction: SELECT ... FOR UPDATE of the member, INSERT of the entry, UPDATE
of the balances) at the same concurrency. Issue 5: report requests/s, p50/p99 latency, errors
(must be 0) and the ratio.

Per configuration `w<workers>[t<threads>]c<connections>` (e.g. w3c6: 3 sync workers, 6 client
connections; w2t2c6: 2 gthread workers of 2 threads): start gunicorn (`config.wsgi`, settings
`--settings`, default config.settings.production with DEBUG off, persistent database
connections, API_RATE_LIMIT raised for the bench key), then `--connections` client processes
(http.client, keep-alive where the worker class allows it) post purchases at random members
among `--members`, each with its own Idempotency-Key and order id, `--warmup` s unmeasured then
`--seconds` s measured; then the raw posts with as many processes. Every run starts from the
same state (no activities, entries or tier rows, zero balances; VACUUM ANALYZE, CHECKPOINT).
After every API run: verify_ledger, activities == 201 responses == activity keys == HTTP
idempotency records, rule awards == entries.

Then (`--profile N`) N requests in this process through Django's test client: statements per
request, time inside execute() vs Python, the statements by kind.

    .venv/bin/python bench/bench_activities.py [--configs w2c4,w3c6,w4c8] [--seconds 20] [--members 10000]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import datetime as dt
import http.client
import io
import json
import multiprocessing as mp
import os
import pstats
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import bench_earn

TARGET_NOTE = "issue 5: report (no ratio target set); errors must be 0"
PATH = "/api/v1/activities"
CATEGORIES = ("shoes", "shirts", "books", "food")
CONFIG_RE = re.compile(r"^w(\d+)(?:t(\d+))?c(\d+)$")


# --------------------------------------------------------------------------------------------
# Data


def setup_program(members: int, tiers: bool):
    """The program, its 5 earning rules, 3 tiers, `members` members and an API key."""
    from loyalty.models import Program, ProgramAPIKey
    from loyalty.services import api_key_create
    from tiers.models import Tier
    from tiers.services import tier_create
    from workflows.models import EarningRule
    from workflows.services import rule_create

    C.reset_ledger()
    C.execute("TRUNCATE tiers_tierchange, tiers_membertier")
    program = C.bench_program(
        "bench-act",
        name="Bench activities",
        expiry_days=365,
        pending_days=0,
        currency="EUR",
        earn_rate=Decimal("1"),
        tier_metric=Program.TierMetric.POINTS_EARNED,
        tier_window=Program.TierWindow.ROLLING,
        tier_window_days=365,
    )
    EarningRule.objects.filter(program=program).delete()
    now = dt.datetime.now(dt.UTC)
    rules = [
        rule_create(program=program, name="Base points", trigger="purchase", kind="per_amount", priority=100),
        rule_create(
            program=program,
            name="Shoes bonus",
            trigger="purchase",
            kind="per_category",
            points=Decimal(2),
            include_categories=["shoes"],
            priority=90,
        ),
        rule_create(
            program=program,
            name="Featured products",
            trigger="purchase",
            kind="per_sku",
            points=Decimal(25),
            include_skus=[f"SKU-{i}" for i in range(1, 11)],
            priority=80,
        ),
        rule_create(
            program=program,
            name="Double points campaign",
            trigger="purchase",
            kind="per_amount",
            multiplier=Decimal(2),
            min_amount=Decimal(20),
            starts_at=now - dt.timedelta(days=1),
            ends_at=now + dt.timedelta(days=30),
            days_of_week=list(range(7)),  # every day: the run's figures don't depend on the weekday
            channel="online",
            priority=70,
        ),
        rule_create(
            program=program,
            name="Visit bonus (once a day)",
            trigger="purchase",
            kind="fixed",
            points=Decimal(50),
            cap_per_day=50,
            priority=10,
        ),
    ]
    Tier.objects.filter(program=program).delete()
    if tiers:
        for name, position, threshold, multiplier in (
            ("Silver", 1, 5_000, "1.25"),
            ("Gold", 2, 20_000, "1.5"),
            ("Platinum", 3, 80_000, "2"),
        ):
            tier_create(
                program=program,
                name=name,
                position=position,
                threshold=Decimal(threshold),
                multiplier=Decimal(multiplier),
                retention_days=365,
            )
    C.insert_members(program.id, members)
    ProgramAPIKey.objects.filter(program=program).delete()
    _, key = api_key_create(program=program, name="bench", scopes=["read", "write"])
    return program, rules, key


def reset_postings(members: int) -> None:
    """Back to: members with zero balances; no activities, entries, awards, keys, tier rows."""
    C.execute(
        "TRUNCATE loyalty_allocation, loyalty_idempotencyrecord, loyalty_ledgerentry, loyalty_activity, "
        "tiers_tierchange, tiers_membertier RESTART IDENTITY CASCADE"
    )
    C.execute(
        "UPDATE loyalty_member SET available = 0, pending = 0, lifetime_earned = 0, redeemed = 0, expired = 0 "
        "WHERE available <> 0 OR pending <> 0 OR lifetime_earned <> 0 OR redeemed <> 0 OR expired <> 0"
    )
    C.settle_database(
        [
            "loyalty_member",
            "loyalty_ledgerentry",
            "loyalty_activity",
            "loyalty_idempotencyrecord",
            "workflows_ruleaward",
            "tiers_membertier",
            "tiers_tierchange",
        ]
    )


def purchase(rng: random.Random, members: int, order_id: str) -> dict[str, Any]:
    items = []
    for _ in range(rng.randint(1, 3)):
        items.append(
            {
                "sku": f"SKU-{rng.randint(1, 50)}",
                "category": rng.choice(CATEGORIES),
                "quantity": rng.randint(1, 3),
                "unit_price": f"{rng.randint(100, 9000) / 100:.2f}",
            }
        )
    amount = sum(Decimal(i["unit_price"]) * i["quantity"] for i in items)
    return {
        "member_id": rng.randint(1, members),
        "type": "purchase",
        "order_id": order_id,
        "amount": str(amount),
        "currency": "EUR",
        "channel": "online",
        "items": items,
    }


# --------------------------------------------------------------------------------------------
# gunicorn


def free_port() -> int:
    """`BENCH_PORT` when set (a port range shared with others), else any free port."""
    if os.environ.get("BENCH_PORT"):
        return int(os.environ["BENCH_PORT"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SERVER_CACHE_DIR: list[str] = []


def server_cache_dir() -> str:
    """The gunicorn server's cache (LOYALTY_CACHE_DIR: the file cache of the default settings),
    a directory of this bench process, emptied before every HTTP run (`clear_server_cache`)."""
    if not _SERVER_CACHE_DIR:
        _SERVER_CACHE_DIR.append(tempfile.mkdtemp(prefix="bench_server_cache_"))
        atexit.register(shutil.rmtree, _SERVER_CACHE_DIR[0], ignore_errors=True)
    return _SERVER_CACHE_DIR[0]


def clear_server_cache() -> None:
    """Empty the server's cache before a run. It holds the per-key rate limit's history (DRF's
    throttle keeps the time of every request of the key in the last minute, and the file cache
    pickles and compresses that list on every request: about 0.9 ms of CPU per 1,000 entries,
    docs/performance.md): without this a run would pay for the requests of the runs before it
    with the same key within the minute."""
    for name in os.listdir(server_cache_dir()):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(server_cache_dir(), name))


def server_env(settings: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": env.get("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-0123456789"),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on 127.0.0.1 (production sits behind TLS)
            "API_RATE_LIMIT": "100000000/min",  # the per-key limit (default 3000/min) would refuse the bench
            "DJANGO_LOG_LEVEL": "WARNING",
        }
    )
    if not env.get("CACHE_URL") and not env.get("REDIS_URL"):
        env["LOYALTY_CACHE_DIR"] = server_cache_dir()
    return env


class Gunicorn:
    def __init__(self, workers: int, threads: int | None, settings: str) -> None:
        self.port = free_port()
        cmd = [
            str(C.ROOT / ".venv" / "bin" / "gunicorn"),
            "config.wsgi",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
            "--timeout",
            "60",
        ]
        if threads:
            cmd += ["--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "5"]
        self.cmd = cmd
        self.log = tempfile.NamedTemporaryFile("w", prefix="bench_activities_gunicorn_", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, cwd=C.ROOT, env=server_env(settings), stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.proc.returncode}; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise SystemExit("gunicorn did not answer /health within 60 s")
        # DEBUG must be off: a 404 must not be Django's technical page.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/bench-no-such-page")
        body = conn.getresponse().read().decode(errors="replace")
        conn.close()
        if "Django tried these URL patterns" in body or "DEBUG = True" in body:
            self.stop()
            raise SystemExit("the server runs with DEBUG on: pick a settings module without DEBUG")

    def worker_pids(self) -> list[int]:
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.append(int(stat.parent.name))
        return pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def cpu_of(pids: list[int]) -> float:
    return sum(bench_earn.proc_cpu_seconds(p) for p in pids)


def db_backend_pids() -> list[int]:
    with C.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        return [r[0] for r in cur.fetchall()]


# --------------------------------------------------------------------------------------------
# The HTTP client


def client(
    wid: int,
    tag: str,
    port: int,
    key: str,
    members: int,
    warmup: float,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    try:
        rng = random.Random(f"{tag}-{wid}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json", "Connection": "keep-alive"}
        statuses: Counter[int] = Counter()
        errors: list[str] = []
        latencies: list[float] = []
        warm_created = 0
        reconnects = 0
        barrier.wait()
        cpu0 = None
        started = time.perf_counter()
        measure_from = started + warmup
        deadline = measure_from + seconds
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            if cpu0 is None and t0 >= measure_from:
                cpu0 = time.process_time()
            order = f"{tag}-{wid}-{i}"
            body = json.dumps(purchase(rng, members, order))
            try:
                if conn.sock is None:
                    reconnects += 1
                conn.request("POST", PATH, body=body, headers={**headers, "Idempotency-Key": f"k-{order}"})
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status, data = 0, repr(exc).encode()
            latency = time.perf_counter() - t0
            i += 1
            if t0 < measure_from:
                warm_created += status == 201
                if status != 201 and len(errors) < 5:
                    errors.append(f"(warm-up) {status} {data[:300]!r}")
                continue
            statuses[status] += 1
            latencies.append(latency)
            if status != 201 and len(errors) < 5:
                errors.append(f"{status} {data[:300]!r}")
        elapsed = time.perf_counter() - measure_from
        cpu = time.process_time() - (cpu0 or time.process_time())
        results.put((wid, dict(statuses), warm_created, elapsed, latencies, errors, cpu, reconnects))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put((wid, None, 0, 0.0, [], [repr(exc)], 0.0, 0))
        raise


def run_http(server: Gunicorn, key: str, *, connections: int, members: int, warmup: float, seconds: float, tag: str):
    clear_server_cache()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(connections + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=client, args=(w, tag, server.port, key, members, warmup, seconds, barrier, results))
        for w in range(connections)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    time.sleep(warmup)
    workers = server.worker_pids()
    backends = db_backend_pids()
    cpu0 = (cpu_of(workers), cpu_of(backends))
    time.sleep(seconds)
    cpu1 = (cpu_of(workers), cpu_of(backends))
    got = [results.get(timeout=warmup + seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    failed = [g for g in got if g[1] is None]
    if failed:
        raise SystemExit(f"client failed: {failed[0][5]}")
    statuses: Counter[int] = Counter()
    for g in got:
        statuses.update(g[1])
    ok = statuses.get(201, 0)
    total = sum(statuses.values())
    lat = sorted(x for g in got for x in g[4])
    elapsed = max(g[3] for g in got)
    errors = [e for g in got for e in g[5]]
    return {
        "requests": total,
        "created": ok,
        "created_all": ok + sum(g[2] for g in got),
        "errors": total - ok,
        "error_samples": errors,
        "seconds": elapsed,
        "rate": ok / elapsed,
        "p50": lat[len(lat) // 2] * 1000 if lat else float("nan"),
        "p99": lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan"),
        "client_cpu_ms": sum(g[6] for g in got) / max(total, 1) * 1000,
        "web_cpu_ms": (cpu1[0] - cpu0[0]) / max(total, 1) * 1000,
        "db_cpu_ms": (cpu1[1] - cpu0[1]) / max(total, 1) * 1000,
        "reconnects": sum(g[7] for g in got),
        "warm_errors": sum(1 for e in errors if e.startswith("(warm-up)")),
    }


def verify_api_run(res: dict[str, Any]) -> list[str]:
    """Activities == 201 responses (warm-up included) == activity keys == HTTP records;
    rule awards == entries; verify_ledger clean."""
    counts = {}
    with C.cursor() as cur:
        for name, sql in (
            ("activities", "SELECT count(*) FROM loyalty_activity"),
            ("activity keys", "SELECT count(*) FROM loyalty_idempotencyrecord WHERE operation = 'activity'"),
            ("HTTP idempotency records", "SELECT count(*) FROM loyalty_idempotencyrecord WHERE key LIKE 'http:%%'"),
            ("entries", "SELECT count(*) FROM loyalty_ledgerentry"),
            ("rule awards", "SELECT count(*) FROM workflows_ruleaward"),
            ("tier upgrades", "SELECT count(*) FROM tiers_tierchange"),
        ):
            cur.execute(sql)
            counts[name] = cur.fetchone()[0]
    problems = []
    for name in ("activities", "activity keys", "HTTP idempotency records"):
        if counts[name] != res["created_all"]:
            problems.append(f"{name} {counts[name]} != 201 responses {res['created_all']}")
    if counts["entries"] != counts["rule awards"]:
        problems.append(f"entries {counts['entries']} != rule awards {counts['rule awards']}")
    n, seconds, first = C.ledger_check()
    if n:
        problems.append(f"verify_ledger: {n} problems, e.g. {first}")
    res["counts"] = counts
    res["verify_seconds"] = seconds
    return problems


# --------------------------------------------------------------------------------------------
# In-process profile of the request path


_TABLE_RE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?([a-z_]+)"?', re.IGNORECASE)


class StatementKinds(bench_earn.StatementLog):
    """bench_earn's statement log, with statements grouped by verb and first table (savepoint
    names and column lists differ per statement)."""

    def __call__(self, execute, sql, params, many, context):
        words = sql.split()
        verb = words[0].upper() if words else "?"
        if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
            head = verb + (" SAVEPOINT" if verb != "SAVEPOINT" else "")
        else:
            table = _TABLE_RE.search(sql)
            head = f"{verb} {table[1] if table else ' '.join(words[1:3])[:40]}"
            if verb == "WITH":
                head = f"WITH {words[1] if len(words) > 1 else ''} ... ({table[1] if table else '?'})"
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - t0
            self.count += 1
            self.kinds[head] += 1


def profile_requests(key: str, members: int, n: int, tag: str) -> None:
    from django.db import connection
    from django.test import Client

    client_ = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    rng = random.Random(f"{tag}-profile")
    log = StatementKinds()

    def post(i: int) -> int:
        body = purchase(rng, members, f"{tag}-p{i}")
        resp = client_.post(PATH, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"k-{tag}-p{i}")
        return resp.status_code

    for i in range(30):
        post(-1 - i)
    t0 = time.perf_counter()
    with connection.execute_wrapper(log):
        statuses = Counter(post(i) for i in range(n))
    ms = (time.perf_counter() - t0) / n * 1000
    db_ms = log.seconds / n * 1000
    print(f"-- profile: {n} requests in this process (Django test client, no HTTP server), statuses {dict(statuses)}")
    C.print_table(
        ["path", "ms/request", "statements/request", "ms in execute()", "ms Python outside"],
        [("POST /api/v1/activities", f"{ms:.2f}", f"{log.count / n:.1f}", f"{db_ms:.2f}", f"{ms - db_ms:.2f}")],
    )
    print("statements per request, by kind (verb and first table):")
    for head, count in log.kinds.most_common():
        print(f"  {count / n:5.2f} x  {head}")
    print()
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n // 2):
        post(n + i)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(18)
    stats.print_stats(r"/(loyalty|workflows|tiers|notifications|cards|rewards)/(?!migrations)", 30)
    print(f"cProfile of {n // 2} requests (cumulative; cProfile inflates Python time, read the shares):")
    lines = buf.getvalue().splitlines()
    print("\n".join(line for line in lines if line.strip() and not line.startswith(("   Ordered", "   List"))))
    print()


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--configs", default="w2c4,w3c6,w4c8", help="comma list of w<workers>[t<threads>]c<conns>")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time before each API run")
    parser.add_argument("--rounds", type=int, default=1, help="alternate raw / API this many times per config")
    parser.add_argument("--settings", default="config.settings.production", help="gunicorn's DJANGO_SETTINGS_MODULE")
    parser.add_argument("--no-tiers", action="store_true", help="program without tiers (no tier evaluation)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw ledger posts")
    parser.add_argument("--profile", type=int, default=400, help="requests in the in-process profile (0: skip)")
    C.add_common_args(parser)
    args = parser.parse_args()
    configs = []
    for spec in args.configs.split(","):
        m = CONFIG_RE.match(spec.strip())
        if not m:
            parser.error(f"bad config {spec!r}: use w<workers>[t<threads>]c<connections>, e.g. w3c6")
        configs.append((spec.strip(), int(m[1]), int(m[2]) if m[2] else None, int(m[3])))

    # The in-process profile posts through this process's settings: lift the per-key limit here too.
    os.environ["API_RATE_LIMIT"] = "100000000/min"
    C.setup_django(force_db=args.force_db)
    C.print_header(
        f"POST /api/v1/activities over gunicorn vs raw ledger posts: {args.members} members, "
        f"{args.seconds:g} s per run (+{args.warmup:g} s warm-up)"
    )
    program, rules, key = setup_program(args.members, tiers=not args.no_tiers)
    print(f"program {program.slug}: {len(rules)} active purchase rules: " + "; ".join(r.name for r in rules))
    tiers = "none" if args.no_tiers else "Silver 5,000, Gold 20,000, Platinum 80,000 points (rolling 365 days)"
    print(f"tiers: {tiers}")
    print(f"server: gunicorn config.wsgi, DJANGO_SETTINGS_MODULE={args.settings}, DEBUG off, API_RATE_LIMIT raised")
    print("requests: purchases of 1-3 items (4 categories, 50 SKUs), random member, unique order id and key")
    print()
    tag = f"a{int(time.time())}"
    runs: list[dict[str, Any]] = []
    for spec, workers, threads, conns in configs:
        server = None
        try:
            server = Gunicorn(workers, threads, args.settings)
            for r in range(args.rounds):
                for mode in ("api",) if args.no_raw else ("raw", "api"):
                    reset_postings(args.members)
                    before = C.load_snapshot()
                    if mode == "raw":
                        res = bench_earn.run_parallel(
                            "raw",
                            procs=conns,
                            program_id=program.id,
                            expiry_days=program.expiry_days,
                            members=args.members,
                            seconds=args.seconds,
                            tag=f"{tag}-{spec}-r{r}",
                        )
                        problems, _s, first = C.ledger_check()
                        res.update(config=spec, round=r + 1, errors=0)
                        print(
                            f"{spec:8s} round {r + 1} raw  {res['posts']:7d} posts in {res['seconds']:.1f} s = "
                            f"{res['rate']:7.0f}/s  p50 {res['p50']:.2f} ms  p99 {res['p99']:.2f} ms  "
                            f"CPU/post client {res['client_cpu_ms']:.2f} db {res['server_cpu_ms']:.2f} ms  [{before}]",
                            flush=True,
                        )
                        if problems:
                            raise SystemExit(f"verify failed after raw: {first}")
                    else:
                        res = run_http(
                            server,
                            key,
                            connections=conns,
                            members=args.members,
                            warmup=args.warmup,
                            seconds=args.seconds,
                            tag=f"{tag}-{spec}-r{r}",
                        )
                        res.update(config=spec, round=r + 1, mode="api")
                        problems = verify_api_run(res)
                        print(
                            f"{spec:8s} round {r + 1} API  {res['created']:7d} x 201 in {res['seconds']:.1f} s = "
                            f"{res['rate']:7.1f}/s  p50 {res['p50']:.1f} ms  p99 {res['p99']:.1f} ms  errors "
                            f"{res['errors']}  CPU/request client {res['client_cpu_ms']:.2f} web "
                            f"{res['web_cpu_ms']:.2f} db {res['db_cpu_ms']:.2f} ms  reconnects {res['reconnects']}  "
                            f"[{before}]",
                            flush=True,
                        )
                        c = res["counts"]
                        print(
                            f"         after: {c['activities']} activities (201s incl. warm-up: "
                            f"{res['created_all']}), {c['entries']} entries "
                            f"({c['entries'] / max(c['activities'], 1):.2f}/activity), {c['rule awards']} awards, "
                            f"{c['tier upgrades']} tier upgrades; verify_ledger {res['verify_seconds']:.1f} s: "
                            f"{'OK' if not problems else 'FAILED'}",
                            flush=True,
                        )
                        if res["error_samples"]:
                            print("         first errors: " + "\n                       ".join(res["error_samples"]))
                        if problems:
                            raise SystemExit("verification failed: " + "; ".join(problems))
                    res["mode"] = mode
                    runs.append(res)
        finally:
            if server is not None:
                server.stop()
    print()

    rows = []
    for spec, workers, threads, conns in configs:
        api = [x for x in runs if x["config"] == spec and x["mode"] == "api"]
        raw = [x for x in runs if x["config"] == spec and x["mode"] == "raw"]
        api_rate = sum(x["created"] for x in api) / sum(x["seconds"] for x in api)
        raw_rate = sum(x["posts"] for x in raw) / sum(x["seconds"] for x in raw) if raw else float("nan")
        kind = f"{workers} gthread x {threads}" if threads else f"{workers} sync"
        rows.append(
            (
                spec,
                kind,
                conns,
                f"{api_rate:.1f}",
                f"{statistics.median(x['p50'] for x in api):.1f}",
                f"{statistics.median(x['p99'] for x in api):.1f}",
                sum(x["errors"] for x in api),
                f"{statistics.median(x['client_cpu_ms'] for x in api):.2f} / "
                f"{statistics.median(x['web_cpu_ms'] for x in api):.2f} / "
                f"{statistics.median(x['db_cpu_ms'] for x in api):.2f}",
                f"{raw_rate:.0f}",
                f"{api_rate / raw_rate:.1%}" if raw else "-",
            )
        )
    print(f"RESULT POST /api/v1/activities (5 rules{'' if args.no_tiers else ', 3 tiers'}), {args.members} members:")
    C.print_table(
        [
            "config",
            "gunicorn workers",
            "connections",
            "API req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "CPU ms/req client/web/db",
            "raw posts/s",
            "API/raw",
        ],
        rows,
    )
    print(
        f"(CPU per request: client processes / gunicorn workers / PostgreSQL backends, from /proc; with "
        f"{os.cpu_count()} CPUs the sum x req/s can't exceed {os.cpu_count()}000 ms/s)"
    )
    print(f"{TARGET_NOTE}: errors {'0: OK' if all(x['errors'] == 0 for x in runs) else 'NOT 0'}")
    print()
    if args.profile:
        reset_postings(args.members)
        profile_requests(key, args.members, args.profile, tag)


if __name__ == "__main__":
    main()
