"""Redemption and coupon-use throughput over HTTP (issue 6, "Speed"): `POST /api/v1/redemptions`
(a reward without stock limit, and one with a stock) and `POST /api/v1/redemptions/{code}/use`
(each request on a distinct coupon issued beforehand) served by gunicorn on this machine, the
same setup as bench_activities.py (its `Gunicorn`, `server_env`, settings, CPU accounting), against
the raw ledger post of bench_earn.py (BEGIN; SELECT ... FOR UPDATE; INSERT; UPDATE; COMMIT) at
the same concurrency, in the same run.

Per operation:
1. max: `--connections` closed-loop client processes (http.client, keep-alive), `--warmup` s
   unmeasured then `--seconds` s measured: requests/s, p50/p99, errors (must be 0).
2. paced: open loop at a fixed total rate, `--pace` (default 0.5) x the rate measured in step 1,
   spread over `--paced-clients` processes (each sends on its own fixed schedule, phases
   staggered; a request's latency counts from its *scheduled* send time, so a slow server
   cannot hide its queue by delaying the next request): p50/p99 against issue 6's target for
   the whole API, "p99 under 50 ms at 50% of the maximum throughput on this machine".
Operations: `redeem` (reward without stock), `redeem_stock` (stock 10^9: every redemption takes
one unit with a conditional UPDATE of the reward row), `use`, and `activity` (the purchases of
bench_activities.py, its program with 5 rules and 3 tiers; run last: its setup replaces the data).

Data: `--members` members funded with one earn lot of `--fund` points each by SQL (consistent with
the ledger); coupons for `use` are issued by SQL too (redeem entry, allocation, coupon row,
lowered lot and balances, like `reward_redeem` writes them). Every run starts from the same state
(VACUUM ANALYZE, CHECKPOINT). After every run: verify_ledger clean; redeem: coupons == 201
responses (warm-up included) == HTTP idempotency records == redeem entries (and the reward's
issued_count == its coupons); use: used coupons == 200 responses == HTTP records.

Then (`--profile N`) N requests of each redemption operation in this process through Django's
test client: statements per request by kind, time inside execute() vs Python, cProfile.

    .venv/bin/python bench/bench_redemptions.py [--ops redeem,redeem_stock,use,activity] [--seconds 20]
"""

from __future__ import annotations

import argparse
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
import statistics
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import bench_activities as A
import bench_earn

TARGET_P99_MS = 50.0
COST = 10
OPS = {
    "redeem": ("POST /api/v1/redemptions (reward without stock limit)", 201),
    "redeem_stock": ("POST /api/v1/redemptions (reward with stock)", 201),
    "use": ("POST /api/v1/redemptions/{code}/use (distinct issued coupons)", 200),
    "activity": ("POST /api/v1/activities (bench_activities' purchases, 5 rules, 3 tiers)", 201),
}
REDEEM_PATH = "/api/v1/redemptions"


# --------------------------------------------------------------------------------------------
# Data


def setup_program(members: int):
    """The program, a reward without stock and one with a stock, `members` members, an API key."""
    from loyalty.models import ProgramAPIKey
    from loyalty.services import api_key_create
    from rewards.models import Reward
    from rewards.services import reward_create

    C.reset_ledger()  # CASCADE: coupons too
    program = C.bench_program("bench-redeem", name="Bench redemptions", expiry_days=365, pending_days=0)
    Reward.objects.filter(program=program).delete()
    common = {"kind": Reward.Kind.AMOUNT_OFF, "value": Decimal("5"), "cost_points": COST, "valid_days": 30}
    unlimited = reward_create(program=program, name="5 EUR off", **common)
    stocked = reward_create(program=program, name="5 EUR off (limited)", stock=1_000_000_000, **common)
    C.insert_members(program.id, members)
    ProgramAPIKey.objects.filter(program=program).delete()
    _, key = api_key_create(program=program, name="bench", scopes=["read", "write"])
    return program, unlimited, stocked, key


def reset_state(program_id: int, members: int, fund: int) -> None:
    """Back to: every member holds one earn lot of `fund` points (lot id = member id); no other
    entries, coupons, keys or activities; the rewards' issued counts at 0."""
    C.execute(
        "TRUNCATE loyalty_allocation, loyalty_idempotencyrecord, loyalty_ledgerentry, loyalty_activity, "
        "rewards_redemption RESTART IDENTITY CASCADE"
    )
    C.execute(
        "UPDATE loyalty_member SET available = %(f)s, pending = 0, lifetime_earned = %(f)s, redeemed = 0, "
        "expired = 0 WHERE program_id = %(p)s",
        {"f": fund, "p": program_id},
    )
    C.execute(
        "INSERT INTO loyalty_ledgerentry (id, program_id, member_id, kind, points, remaining, created_at, "
        "occurred_at, available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, "
        "created_by_id) "
        "SELECT i, %(p)s, i, 'earn', %(f)s, %(f)s, t, t, t, t, t + interval '365 days', 'bench funding', '', "
        "NULL, NULL, NULL FROM generate_series(1, %(n)s) AS i, (SELECT now() - interval '10 days' AS t) AS v",
        {"p": program_id, "f": fund, "n": members},
    )
    C.fix_entry_sequence()
    C.execute("UPDATE rewards_reward SET issued_count = 0 WHERE program_id = %s", [program_id])
    C.settle_database(
        [
            "loyalty_member",
            "loyalty_ledgerentry",
            "loyalty_allocation",
            "loyalty_idempotencyrecord",
            "rewards_redemption",
            "rewards_reward",
        ]
    )


def issue_coupons(program, reward, members: int, count: int, seed: str) -> list[str]:
    """`count` issued coupons of `reward` at random members, written by SQL as `reward_redeem`
    writes them: a redeem entry (-COST, reference = the code) allocated to the member's lot,
    the coupon row, the lot's remaining and the member's balances lowered. Returns the codes."""
    from django.db import transaction

    from rewards import codes

    rng = random.Random(seed)
    code_set: set[str] = set()
    while len(code_set) < count:
        code_set.add(codes.new_code())
    code_list = sorted(code_set)
    rng.shuffle(code_list)
    member_ids = [rng.randint(1, members) for _ in code_list]
    now = dt.datetime.now(dt.UTC)
    with transaction.atomic(), C.cursor() as cur:
        cur.execute(
            "WITH c AS (SELECT * FROM unnest(%(codes)s::text[], %(members)s::bigint[]) WITH ORDINALITY "
            "AS c(code, member_id, n)), "
            "e AS (INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, "
            "occurred_at, available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, "
            "created_by_id) SELECT %(p)s, member_id, 'redeem', -%(cost)s, 0, %(now)s, %(now)s, NULL, NULL, NULL, "
            "%(reason)s, code, NULL, NULL, NULL FROM c ORDER BY n RETURNING id, member_id, reference), "
            "a AS (INSERT INTO loyalty_allocation (debit_id, lot_id, points, created_at) "
            "SELECT id, member_id, %(cost)s, %(now)s FROM e) "
            "INSERT INTO rewards_redemption (program_id, reward_id, member_id, code, status, points, kind, value, "
            "sku, entry_id, refund_entry_id, counts_against_stock, issued_at, expires_at, used_at, order_id, "
            "cancelled_at, expired_at) SELECT %(p)s, %(r)s, member_id, reference, 'issued', %(cost)s, %(kind)s, "
            "%(value)s, '', id, NULL, false, %(now)s, %(now)s + interval '30 days', NULL, '', NULL, NULL FROM e",
            {
                "codes": code_list,
                "members": member_ids,
                "p": program.id,
                "r": reward.id,
                "cost": COST,
                "now": now,
                "reason": f"Reward: {reward.name}",
                "kind": reward.kind,
                "value": reward.value,
            },
        )
        per_member = Counter(member_ids)
        ids = list(per_member)
        pts = [per_member[m] * COST for m in ids]
        cur.execute(
            "UPDATE loyalty_ledgerentry l SET remaining = l.remaining - x.pts "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS x(id, pts) WHERE l.id = x.id",
            [ids, pts],
        )
        cur.execute(
            "UPDATE loyalty_member m SET available = m.available - x.pts, redeemed = m.redeemed + x.pts "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS x(id, pts) WHERE m.id = x.id",
            [ids, pts],
        )
    C.settle_database(["loyalty_member", "loyalty_ledgerentry", "loyalty_allocation", "rewards_redemption"])
    return code_list


# --------------------------------------------------------------------------------------------
# The HTTP client: closed loop (rate None) or paced (open loop at `rate` requests/s)


def request_for(op: str, spec: dict[str, Any], rng: random.Random, name: str, codes: list[str], i: int):
    """(path, body) of the i-th request of a client; None when it has no coupon left."""
    if op in ("redeem", "redeem_stock"):
        return REDEEM_PATH, {"member_id": rng.randint(1, spec["members"]), "reward_id": spec["reward_id"]}
    if op == "use":
        if i >= len(codes):
            return None
        return f"{REDEEM_PATH}/{codes[i]}/use", {"order_id": f"order-{name}"}
    return A.PATH, A.purchase(rng, spec["members"], name)


def client(
    wid: int,
    op: str,
    port: int,
    key: str,
    spec: dict[str, Any],
    codes: list[str],
    rate: float | None,
    phase: float,
    warmup: float,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    try:
        expected = OPS[op][1]
        tag = spec["tag"]
        rng = random.Random(f"{tag}-{wid}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json", "Connection": "keep-alive"}
        statuses: Counter[int] = Counter()
        errors: list[str] = []
        latencies: list[float] = []
        service: list[float] = []  # from the actual send (paced: without the client-side wait)
        warm_ok = reconnects = 0
        ran_out = False
        barrier.wait()
        cpu0 = None
        started = time.perf_counter()
        measure_from = started + warmup
        deadline = measure_from + seconds
        i = 0
        while True:
            if rate is None:
                t_sched = time.perf_counter()
            else:
                t_sched = started + phase + i / rate
                wait = t_sched - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            if t_sched >= deadline:
                break
            if cpu0 is None and t_sched >= measure_from:
                cpu0 = time.process_time()
            name = f"{tag}-{wid}-{i}"
            req = request_for(op, spec, rng, name, codes, i)
            if req is None:
                ran_out = True
                break
            path, body = req
            t_send = time.perf_counter()
            try:
                if conn.sock is None and i:
                    reconnects += 1
                conn.request("POST", path, body=json.dumps(body), headers={**headers, "Idempotency-Key": f"k-{name}"})
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status, data = 0, repr(exc).encode()
            done = time.perf_counter()
            i += 1
            if t_sched < measure_from:
                warm_ok += status == expected
                if status != expected and len(errors) < 5:
                    errors.append(f"(warm-up) {status} {data[:300]!r}")
                continue
            statuses[status] += 1
            latencies.append(done - t_sched)
            service.append(done - t_send)
            if status != expected and len(errors) < 5:
                errors.append(f"{status} {data[:300]!r}")
        elapsed = min(time.perf_counter(), deadline) - measure_from if rate is None else seconds
        cpu = time.process_time() - (cpu0 or time.process_time())
        results.put((wid, dict(statuses), warm_ok, elapsed, latencies, service, errors, cpu, reconnects, ran_out))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put((wid, None, 0, 0.0, [], [], [repr(exc)], 0.0, 0, False))
        raise


def backend_cpu() -> dict[int, float]:
    """CPU seconds of this database's client backends (other than this process's), by pid."""
    cpus = {pid: bench_earn.proc_cpu_seconds(pid) for pid in A.db_backend_pids()}
    return {pid: cpu for pid, cpu in cpus.items() if cpu == cpu}  # NaN: ended meanwhile


def sample_lock_waits(seconds: float, last_seen: dict[int, float], every: float = 0.1) -> float:
    """Sleep `seconds` while sampling this database's backends waiting on a lock (row locks:
    `transactionid`/`tuple`); returns the mean number waiting (0.5: half the time, one). Also
    keeps each backend's last seen CPU in `last_seen`."""
    deadline = time.perf_counter() + seconds
    samples = waiting = 0
    while time.perf_counter() < deadline:
        last_seen.update(backend_cpu())
        waiting += C.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        samples += 1
        time.sleep(max(0.0, min(every, deadline - time.perf_counter())))
    return waiting / max(samples, 1)


def pct(values: list[float], q: float) -> float:
    return values[min(int(len(values) * q), len(values) - 1)] * 1000 if values else float("nan")


def run_http(
    server: A.Gunicorn,
    key: str,
    op: str,
    spec: dict[str, Any],
    *,
    clients: int,
    warmup: float,
    seconds: float,
    rate: float | None = None,
    codes: list[str] | None = None,
) -> dict[str, Any]:
    """`clients` processes; closed loop when `rate` is None, else open loop at `rate` req/s in total."""
    A.clear_server_cache()  # the rate limit's history of earlier runs (bench_activities.clear_server_cache)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    per_client = None if rate is None else rate / clients
    procs = []
    for w in range(clients):
        phase = 0.0 if per_client is None else w / rate
        mine = (codes or [])[w::clients]
        procs.append(
            ctx.Process(
                target=client,
                args=(w, op, server.port, key, spec, mine, per_client, phase, warmup, seconds, barrier, results),
            )
        )
    for p in procs:
        p.start()
    barrier.wait()
    time.sleep(warmup)
    workers = server.worker_pids()
    db0 = backend_cpu()
    cpu0 = (A.cpu_of(workers), 0.0)
    last_seen = dict(db0)
    lock_waits = sample_lock_waits(seconds, last_seen)
    last_seen.update(backend_cpu())
    # gunicorn's connections live CONN_MAX_AGE (60 s): a backend may end or start in between.
    # Counted: each backend's CPU when last seen (sampled every 0.1 s) minus its CPU at the start
    # (0 for one started in between).
    db_cpu = sum(cpu - db0.get(pid, 0.0) for pid, cpu in last_seen.items())
    cpu1 = (A.cpu_of(workers), db_cpu)
    got = [results.get(timeout=warmup + seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    failed = [g for g in got if g[1] is None]
    if failed:
        raise SystemExit(f"client failed: {failed[0][6]}")
    expected = OPS[op][1]
    statuses: Counter[int] = Counter()
    for g in got:
        statuses.update(g[1])
    ok = statuses.get(expected, 0)
    total = sum(statuses.values())
    lat = sorted(x for g in got for x in g[4])
    svc = sorted(x for g in got for x in g[5])
    elapsed = max(g[3] for g in got)
    return {
        "op": op,
        "paced": rate is not None,
        "target_rate": rate,
        "clients": clients,
        "requests": total,
        "ok": ok,
        "created_all": ok + sum(g[2] for g in got),  # bench_activities.verify_api_run's name
        "statuses": dict(statuses),
        "errors": total - ok,
        "error_samples": [e for g in got for e in g[6]],
        "seconds": elapsed,
        "rate": ok / elapsed if elapsed else float("nan"),
        "p50": pct(lat, 0.50),
        "p90": pct(lat, 0.90),
        "p99": pct(lat, 0.99),
        "max": pct(lat, 1.0),
        "svc_p50": pct(svc, 0.50),
        "svc_p99": pct(svc, 0.99),
        "client_cpu_ms": sum(g[7] for g in got) / max(total, 1) * 1000,
        "web_cpu_ms": (cpu1[0] - cpu0[0]) / max(total, 1) * 1000,
        "db_cpu_ms": (cpu1[1] - cpu0[1]) / max(total, 1) * 1000,
        "reconnects": sum(g[8] for g in got),
        "lock_waits": lock_waits,
        "ran_out": any(g[9] for g in got),
    }


# --------------------------------------------------------------------------------------------
# Verification


def verify_run(op: str, res: dict[str, Any], program, reward_id: int | None) -> list[str]:
    if op == "activity":
        return A.verify_api_run(res)
    counts: dict[str, int] = {}
    with C.cursor() as cur:
        for name, sql, params in (
            ("coupons", "SELECT count(*) FROM rewards_redemption WHERE program_id = %s", [program.id]),
            ("coupons of the reward", "SELECT count(*) FROM rewards_redemption WHERE reward_id = %s", [reward_id]),
            ("used coupons", "SELECT count(*) FROM rewards_redemption WHERE status = 'used'", None),
            (
                "HTTP idempotency records",
                "SELECT count(*) FROM loyalty_idempotencyrecord WHERE key LIKE 'http:%%'",
                None,
            ),
            ("redeem entries", "SELECT count(*) FROM loyalty_ledgerentry WHERE kind = 'redeem'", None),
            ("issued_count", "SELECT coalesce(max(issued_count), 0) FROM rewards_reward WHERE id = %s", [reward_id]),
        ):
            cur.execute(sql, params)
            counts[name] = cur.fetchone()[0]
    problems = []
    n = res["created_all"]
    if op in ("redeem", "redeem_stock"):
        for name in ("coupons", "HTTP idempotency records", "redeem entries"):
            if counts[name] != n:
                problems.append(f"{name} {counts[name]} != 201 responses {n}")
        if op == "redeem_stock" and counts["issued_count"] != counts["coupons of the reward"]:
            problems.append(f"issued_count {counts['issued_count']} != coupons {counts['coupons of the reward']}")
    else:
        for name in ("used coupons", "HTTP idempotency records"):
            if counts[name] != n:
                problems.append(f"{name} {counts[name]} != 200 responses {n}")
    count, seconds, first = C.ledger_check()
    if count:
        problems.append(f"verify_ledger: {count} problems, e.g. {first}")
    res["counts"] = counts
    res["verify_seconds"] = seconds
    return problems


def report_run(label: str, res: dict[str, Any], problems: list[str], before: str) -> None:
    code = OPS[res["op"]][1]
    extra = ""
    if res["paced"]:
        extra = (
            f" (p90 {res['p90']:.1f} max {res['max']:.1f}; target {res['target_rate']:.1f}/s; "
            f"from the actual send: p50 {res['svc_p50']:.1f} "
            f"p99 {res['svc_p99']:.1f})"
        )
    print(
        f"{label:26s} {res['ok']:6d} x {code} in {res['seconds']:.1f} s = {res['rate']:6.1f}/s  "
        f"p50 {res['p50']:.1f} ms  p99 {res['p99']:.1f} ms{extra}  errors {res['errors']}  "
        f"CPU/request client {res['client_cpu_ms']:.2f} "
        f"web {res['web_cpu_ms']:.2f} db {res['db_cpu_ms']:.2f} ms  reconnects {res['reconnects']}  "
        f"lock waits {res['lock_waits']:.2f}  [{before}]",
        flush=True,
    )
    counts = ", ".join(f"{k} {v}" for k, v in res.get("counts", {}).items())
    print(
        f"{'':26s} after: {counts}; {code}s incl. warm-up {res['created_all']}; verify_ledger "
        f"{res.get('verify_seconds', 0):.1f} s: {'OK' if not problems else 'FAILED'}",
        flush=True,
    )
    if res["error_samples"]:
        print(f"{'':26s} first errors: " + f"\n{'':40s}".join(res["error_samples"]))
    if res["ran_out"]:
        print(f"{'':26s} WARNING: a client ran out of coupons: raise --coupons")
    if problems:
        raise SystemExit("verification failed: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------
# In-process profile


def profile_ops(members: int, fund: int, n: int, tag: str) -> None:
    """`n` requests of each redemption operation through Django's test client in this process."""
    from django.db import connection
    from django.test import Client

    program, unlimited, stocked, key = setup_program(members)  # afresh: the activity run replaced the data
    reset_state(program.id, members, fund)
    client_ = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    rng = random.Random(f"{tag}-profile")
    rows = []
    kinds = {}
    profiles = {}
    for op, reward in (("redeem", unlimited), ("redeem_stock", stocked), ("use", None)):
        expected = OPS[op][1]
        spec = {"members": members, "reward_id": reward.id if reward else None}
        codes = issue_coupons(program, unlimited, members, n + n // 2 + 30, f"{tag}-profile") if op == "use" else []
        counter = iter(range(10**9))

        def post(op=op, spec=spec, codes=codes, counter=counter) -> int:
            i = next(counter)
            path, body = request_for(op, spec, rng, f"{tag}-p{op}-{i}", codes, i)
            resp = client_.post(
                path, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"k-{tag}{op}{i}"
            )
            return resp.status_code

        for _ in range(30):
            post()
        log = A.StatementKinds()
        t0 = time.perf_counter()
        with connection.execute_wrapper(log):
            statuses = Counter(post() for _ in range(n))
        ms = (time.perf_counter() - t0) / n * 1000
        db_ms = log.seconds / n * 1000
        rows.append((op, str(dict(statuses)), f"{ms:.2f}", f"{log.count / n:.1f}", f"{db_ms:.2f}", f"{ms - db_ms:.2f}"))
        if statuses.get(expected) != n:
            print(f"WARNING: profile of {op}: statuses {dict(statuses)}")
        kinds[op] = log.kinds
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n // 2):
            post()
        prof.disable()
        profiles[op] = prof
    print(f"-- profile: {n} requests per operation in this process (Django test client, no HTTP server)")
    C.print_table(
        ["operation", "statuses", "ms/request", "statements/request", "ms in execute()", "ms Python outside"], rows
    )
    for op, log_kinds in kinds.items():
        print(f"statements per request of {op}, by kind (verb and first table):")
        for head, count in log_kinds.most_common():
            print(f"  {count / n:5.2f} x  {head}")
        print()
    for op, prof in profiles.items():
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("cumulative").print_stats(22)
        stats.print_stats(r"/(loyalty|workflows|tiers|notifications|cards|rewards)/(?!migrations)", 25)
        print(f"cProfile of {n // 2} {op} requests (cumulative; cProfile inflates Python time, read the shares):")
        lines = buf.getvalue().splitlines()
        print("\n".join(line for line in lines if line.strip() and not line.startswith(("   Ordered", "   List"))))
        print()
    problems, seconds, first = C.ledger_check()
    print(f"profile: verify_ledger {seconds:.1f} s: {'OK' if not problems else f'FAILED {first}'}")
    print()


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="redeem,redeem_stock,use,activity", help=f"comma list of {', '.join(OPS)}")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--fund", type=int, default=1_000_000, help="points of each member's funding lot")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="gthread threads per worker (0: sync workers)")
    parser.add_argument("--connections", type=int, default=4, help="closed-loop client connections (and raw procs)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time before each run")
    parser.add_argument("--pace", type=float, default=0.5, help="paced run at this fraction of the max (0: skip)")
    parser.add_argument("--paced-clients", type=int, default=8, help="client processes of the paced run")
    parser.add_argument("--coupons", type=int, default=10_000, help="coupons issued before the max use run")
    parser.add_argument("--settings", default="config.settings.production", help="gunicorn's DJANGO_SETTINGS_MODULE")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw ledger posts")
    parser.add_argument("--profile", type=int, default=300, help="requests per operation in the profile (0: skip)")
    C.add_common_args(parser)
    args = parser.parse_args()
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    for o in ops:
        if o not in OPS:
            parser.error(f"unknown operation {o!r}")
    if "activity" in ops:  # its setup replaces the redemption data: last
        ops = [o for o in ops if o != "activity"] + ["activity"]

    os.environ["API_RATE_LIMIT"] = "100000000/min"  # the in-process profile too
    C.setup_django(force_db=args.force_db)
    threads = args.threads or None
    kind = f"{args.workers} gthread x {threads} threads" if threads else f"{args.workers} sync"
    C.print_header(
        f"redemptions and coupon use over gunicorn ({kind}), {args.connections} connections, vs raw ledger "
        f"posts: {args.members} members, {args.seconds:g} s per run (+{args.warmup:g} s warm-up), paced at "
        f"{args.pace:.0%} of the max with {args.paced_clients} clients"
    )
    program, unlimited, stocked, key = setup_program(args.members)
    print(
        f"program {program.slug}: rewards '{unlimited.name}' (id {unlimited.id}, no stock) and '{stocked.name}' "
        f"(id {stocked.id}, stock {stocked.stock}), amount_off 5, {COST} points, valid 30 days; members funded "
        f"with one lot of {args.fund} points each"
    )
    print(f"server: gunicorn config.wsgi, DJANGO_SETTINGS_MODULE={args.settings}, DEBUG off, API_RATE_LIMIT raised")
    for o in ops:
        print(f"  {o:13s} {OPS[o][0]}")
    print()
    tag = f"r{int(time.time())}"
    raws: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []

    current = {"program_id": program.id}  # the activity run replaces the program and members

    def raw_run(label: str) -> None:
        if current["program_id"] == program.id:
            reset_state(program.id, args.members, args.fund)
        else:
            A.reset_postings(args.members)
        before = C.load_snapshot()
        res = bench_earn.run_parallel(
            "raw",
            procs=args.connections,
            program_id=current["program_id"],
            expiry_days=program.expiry_days,
            members=args.members,
            seconds=args.seconds,
            tag=f"{tag}-raw{label}",
        )
        n, _s, first = C.ledger_check()
        print(
            f"{'raw ledger post ' + label:26s} {res['posts']:6d} posts in {res['seconds']:.1f} s = "
            f"{res['rate']:6.0f}/s  p50 {res['p50']:.2f} ms  p99 {res['p99']:.2f} ms  "
            f"CPU/post client {res['client_cpu_ms']:.2f} "
            f"db {res['server_cpu_ms']:.2f} ms  [{before}]",
            flush=True,
        )
        if n:
            raise SystemExit(f"verify failed after raw: {first}")
        raws.append(res)

    server = None
    try:
        server = A.Gunicorn(args.workers, threads, args.settings)
        if not args.no_raw:
            raw_run("(before)")
        spec_base = {"members": args.members}
        for op in ops:
            reward_id = {"redeem": unlimited.id, "redeem_stock": stocked.id}.get(op)
            op_key = key
            if op == "activity":
                act_program, _rules, op_key = A.setup_program(args.members, tiers=True)
                current["program_id"] = act_program.id
            maxres = None
            for phase in ("max", "paced") if args.pace else ("max",):
                if op == "activity":
                    A.reset_postings(args.members)
                else:
                    reset_state(program.id, args.members, args.fund)
                if phase == "paced":
                    rate = maxres["rate"] * args.pace
                    clients = args.paced_clients
                else:
                    rate = None
                    clients = args.connections
                codes = None
                if op == "use":
                    need = args.coupons if rate is None else int(rate * (args.warmup + args.seconds) * 1.2) + 50
                    codes = issue_coupons(program, unlimited, args.members, need, f"{tag}-{phase}")
                before = C.load_snapshot()
                spec = {**spec_base, "reward_id": reward_id, "tag": f"{tag}-{op}-{phase}"}
                res = run_http(
                    server,
                    op_key,
                    op,
                    spec,
                    clients=clients,
                    warmup=args.warmup,
                    seconds=args.seconds,
                    rate=rate,
                    codes=codes,
                )
                problems = verify_run(op, res, program, reward_id)
                report_run(f"{op} {phase}", res, problems, before)
                runs.append(res)
                if phase == "max":
                    maxres = res
        if not args.no_raw:
            # The raw post again after the API runs (load drifts): the ratio uses the mean.
            raw_run("(after)")
    finally:
        if server is not None:
            server.stop()
    print()

    raw_rate = statistics.mean(r["rate"] for r in raws) if raws else float("nan")
    rows = []
    all_ok = True
    hits = []
    for op in ops:
        mx = next(r for r in runs if r["op"] == op and not r["paced"])
        pc = next((r for r in runs if r["op"] == op and r["paced"]), None)
        all_ok &= mx["errors"] == 0 and (pc is None or pc["errors"] == 0)
        hit = pc is not None and pc["p99"] < TARGET_P99_MS and pc["errors"] == 0
        if pc is not None:
            hits.append(hit)
        rows.append(
            (
                op,
                f"{mx['rate']:.1f}",
                f"{mx['p50']:.1f} / {mx['p99']:.1f}",
                mx["errors"],
                f"{mx['client_cpu_ms']:.2f} / {mx['web_cpu_ms']:.2f} / {mx['db_cpu_ms']:.2f}",
                f"{raw_rate:.0f}" if raws else "-",
                f"{mx['rate'] / raw_rate:.1%}" if raws else "-",
                f"{pc['target_rate']:.1f} -> {pc['rate']:.1f}" if pc else "-",
                f"{pc['p50']:.1f} / {pc['p99']:.1f}" if pc else "-",
                pc["errors"] if pc else "-",
                C.verdict(hit) if pc else "-",
                f"{mx['lock_waits']:.2f} / {pc['lock_waits']:.2f}" if pc else f"{mx['lock_waits']:.2f}",
            )
        )
    print(
        f"RESULT gunicorn {kind}, {args.connections} connections (max) / {args.paced_clients} paced clients at "
        f"{args.pace:.0%} of the max, {args.members} members:"
    )
    C.print_table(
        [
            "operation",
            "max req/s",
            "p50 / p99 ms",
            "errors",
            "CPU ms/req client/web/db",
            "raw posts/s",
            "API/raw",
            "paced req/s (target -> got)",
            "paced p50 / p99 ms",
            "paced errors",
            f"p99 < {TARGET_P99_MS:.0f} ms",
            "lock waits max / paced",
        ],
        rows,
    )
    if raws:
        print("raw posts/s per run: " + " / ".join(f"{r['rate']:.0f}" for r in raws) + " (ratio uses the mean)")
    print(
        "(paced latency counts from each request's scheduled send time; CPU per request: client processes / "
        "gunicorn workers / PostgreSQL backends, from /proc; lock waits: mean number of this database's "
        "backends waiting on a lock, sampled every 0.1 s)"
    )
    print(f"errors: {'0: OK' if all_ok else 'NOT 0'}")
    if hits:
        print(
            f"issue 6 target, p99 < {TARGET_P99_MS:.0f} ms at {args.pace:.0%} of the max throughput: "
            f"{C.verdict(all(hits))} ({sum(hits)} of {len(hits)} operations)"
        )
    print()
    if args.profile:
        profile_ops(args.members, args.fund, args.profile, tag)


if __name__ == "__main__":
    main()
