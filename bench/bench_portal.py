"""The customer portal's "My points" page (`GET /p/<slug>/`, logged in) and the shop widget's
endpoint (`GET /p/<slug>/widget/data?token=...`) over HTTP, served by gunicorn on this machine.
Issue 12: requests/s and p99 with 10,000 members at 8 concurrent clients, p99 at half the
maximum throughput, statements per request (target: at most 10 each, p99 under 50 ms at half
the maximum throughput).

Data: one program with 3 tiers, 6 rewards, a referral offer and a widget secret; `--members`
members with `--lots` earn lots each (the last two still pending, the others expiring over the
next year) and matching balances. Logged-in browsers are database sessions made here (the
portal's session key), signed with the server's SECRET_KEY; widget tokens are made with
`portal.widget.token_make` (an hour's validity).

Per endpoint: `--connections` client processes (http.client, keep-alive) request random members
among `--sample` as fast as they can for `--seconds` (after `--warmup` s): the maximum
throughput and its latencies. Then the same clients paced at half that throughput (each sends on
a fixed schedule; latency counts from the scheduled moment, so a late server is not hidden):
the p99 at half load. Then `--profile` requests in this process through Django's test client:
statements per request.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_portal_bench \\
        .venv/bin/python bench/bench_portal.py [--workers 3] [--connections 8] [--seconds 15]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import bench_activities as BA

SECRET_KEY = "bench-only-secret-key-not-for-production-0123456789"  # noqa: S105 (bench_activities.server_env's)
SLUG = "bench-portal"
TARGET_MS = 50.0
MAX_STATEMENTS = 10


# --------------------------------------------------------------------------------------------
# Data


def load(members: int, lots: int):
    """The program and its members with history; returns the program."""
    from loyalty.models import Program
    from loyalty.services import program_widget_secret_rotate
    from rewards.models import Reward
    from tiers.models import Tier
    from tiers.services import tier_create
    from workflows.models import ReferralSettings

    C.reset_ledger()
    C.execute("TRUNCATE tiers_tierchange, tiers_membertier, django_session")
    program = C.bench_program(
        SLUG,
        name="Bench portal",
        points_name="beans",
        expiry_days=365,
        pending_days=14,
        tier_metric=Program.TierMetric.POINTS_EARNED,
        tier_window=Program.TierWindow.LIFETIME,
        brand_color="#B5179E",
    )
    program_widget_secret_rotate(program=program)
    Tier.objects.filter(program=program).delete()
    for name, position, threshold in (("Silver", 1, 500), ("Gold", 2, 2_000), ("Platinum", 3, 8_000)):
        tier_create(program=program, name=name, position=position, threshold=Decimal(threshold))
    Reward.objects.filter(program=program).delete()
    for position, (name, cost) in enumerate(
        (("Espresso", 150), ("Croissant", 300), ("Mug", 900), ("Beans 1 kg", 1_500), ("Grinder", 6_000)), 1
    ):
        Reward.objects.create(
            program=program, name=name, kind=Reward.Kind.FREE_PRODUCT, cost_points=cost, position=position
        )
    Reward.objects.create(
        program=program,
        name="Beans off your order",
        kind=Reward.Kind.POINTS_FOR_AMOUNT,
        value=Decimal("0.01"),
        points_step=100,
        points_min=100,
        position=6,
    )
    ReferralSettings.objects.update_or_create(
        program=program, defaults={"is_active": True, "referrer_points": 500, "friend_points": 250}
    )
    C.insert_members(program.id, members)
    now = dt.datetime.now(dt.UTC)
    # `lots` earn entries per member, a day apart, ending today; the last two still pending.
    C.execute(
        "INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, occurred_at, "
        "available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, created_by_id) "
        "SELECT %(p)s, m, 'earn', pts, pts, t, t, t + interval '14 days', "
        "CASE WHEN k > %(lots)s - 2 THEN NULL ELSE t + interval '14 days' END, t + interval '365 days', "
        "'Purchase', 'order-' || m || '-' || k, NULL, NULL, NULL "
        "FROM generate_series(1, %(n)s) AS m, generate_series(1, %(lots)s) AS k, "
        "LATERAL (SELECT 5 + ((m * 31 + k * 17) %% 120) AS pts, "
        "%(now)s - interval '1 day' * (%(lots)s - k) * 10 AS t) AS v",
        {"p": program.id, "n": members, "lots": lots, "now": now},
    )
    C.execute(
        "UPDATE loyalty_member m SET available = s.avail, pending = s.pend, lifetime_earned = s.avail + s.pend "
        "FROM (SELECT member_id, sum(points) FILTER (WHERE released_at IS NOT NULL) AS avail, "
        "sum(points) FILTER (WHERE released_at IS NULL) AS pend FROM loyalty_ledgerentry GROUP BY member_id) s "
        "WHERE m.id = s.member_id"
    )
    C.fix_entry_sequence()
    C.settle_database([*C.LEDGER_TABLES, "django_session"])
    return program


def sessions_and_tokens(program, sample: int, seed: int) -> list[tuple[int, str, str]]:
    """(member id, session cookie, widget token) for `sample` random members."""
    from django.contrib.sessions.backends.db import SessionStore

    from loyalty.models import Member
    from portal.access import session_key
    from portal.widget import token_make

    rng = random.Random(seed)
    ids = sorted(rng.sample(range(1, Member.objects.filter(program=program).count() + 1), sample))
    refs = dict(Member.objects.filter(pk__in=ids).values_list("pk", "external_id"))
    out = []
    for member_id in ids:
        store = SessionStore()
        store[session_key(program.slug)] = member_id
        store.create()
        out.append((member_id, store.session_key, token_make(program=program, customer_ref=refs[member_id])))
    C.settle_database(["django_session"])
    return out


# --------------------------------------------------------------------------------------------
# The HTTP client


def request_for(kind: str, item: tuple[int, str, str], cookie_name: str) -> tuple[str, dict[str, str]]:
    _member, session, token = item
    if kind == "points":
        return f"/p/{SLUG}/", {"Cookie": f"{cookie_name}={session}"}
    return f"/p/{SLUG}/widget/data?token={token}", {}


def client(wid, kind, port, items, cookie_name, warmup, seconds, interval, barrier, results) -> None:
    """Closed loop (interval 0) or paced: one request every `interval` s on a fixed schedule."""
    try:
        rng = random.Random(f"{kind}-{wid}-{interval}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        statuses: Counter[int] = Counter()
        errors: list[str] = []
        latencies: list[float] = []
        barrier.wait()
        started = time.perf_counter()
        measure_from = started + warmup
        deadline = measure_from + seconds
        next_at = started + rng.random() * interval  # spread the paced clients' phases
        while True:
            if interval:
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                t0 = next_at
                next_at += interval
            else:
                t0 = time.perf_counter()
            if t0 >= deadline:
                break
            path, headers = request_for(kind, rng.choice(items), cookie_name)
            try:
                conn.request("GET", path, headers={**headers, "Connection": "keep-alive"})
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status, body = 0, repr(exc).encode()
            latency = time.perf_counter() - t0
            if t0 < measure_from:
                continue
            statuses[status] += 1
            latencies.append(latency)
            if status != 200 and len(errors) < 3:
                errors.append(f"{status} {body[:200]!r}")
        results.put((wid, dict(statuses), time.perf_counter() - measure_from, latencies, errors))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            barrier.abort()
        results.put((wid, None, 0.0, [], [repr(exc)]))
        raise


def run(server, kind, items, cookie_name, *, connections, warmup, seconds, rate=0.0) -> dict[str, Any]:
    """`connections` clients for `seconds`; `rate` > 0: paced at `rate` requests/s in all."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(connections + 1)
    results = ctx.Queue()
    interval = connections / rate if rate else 0.0
    procs = [
        ctx.Process(
            target=client,
            args=(w, kind, server.port, items, cookie_name, warmup, seconds, interval, barrier, results),
        )
        for w in range(connections)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    got = [results.get(timeout=warmup + seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    failed = [g for g in got if g[1] is None]
    if failed:
        raise SystemExit(f"client failed: {failed[0][4]}")
    statuses: Counter[int] = Counter()
    for g in got:
        statuses.update(g[1])
    lat = sorted(x for g in got for x in g[3])
    ok = statuses.get(200, 0)
    elapsed = max(g[2] for g in got)

    def pct(q: float) -> float:
        return lat[min(int(len(lat) * q), len(lat) - 1)] * 1000 if lat else float("nan")

    return {
        "requests": sum(statuses.values()),
        "ok": ok,
        "errors": sum(statuses.values()) - ok,
        "error_samples": [e for g in got for e in g[4]],
        "rate": ok / elapsed,
        "p50": pct(0.5),
        "p99": pct(0.99),
    }


# --------------------------------------------------------------------------------------------
# Statements per request, in this process


def statements(items, cookie_name: str, n: int) -> dict[str, tuple[float, int, float]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    out = {}
    for kind in ("points", "widget"):
        counts = []
        started = time.perf_counter()
        for i in range(n):
            path, headers = request_for(kind, items[i % len(items)], cookie_name)
            browser = Client()
            if kind == "points":
                browser.cookies[cookie_name] = headers["Cookie"].split("=", 1)[1]
            with CaptureQueriesContext(connection) as queries:
                response = browser.get(path)
            if response.status_code != 200:
                raise SystemExit(f"{kind}: {response.status_code} {response.content[:300]!r}")
            counts.append(len(queries))
        ms = (time.perf_counter() - started) / n * 1000
        out[kind] = (sum(counts) / n, max(counts), ms)
    return out


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--lots", type=int, default=30, help="earn entries per member")
    parser.add_argument("--sample", type=int, default=2_000, help="members the clients pick from")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--threads", type=int, default=0, help="gthread threads per worker (0: sync workers)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--settings", default="config.settings.production", help="gunicorn's DJANGO_SETTINGS_MODULE")
    parser.add_argument("--profile", type=int, default=200, help="requests per endpoint for the statement count")
    C.add_common_args(parser)
    args = parser.parse_args()

    os.environ["DJANGO_SECRET_KEY"] = SECRET_KEY  # sessions made here are read by the server
    C.setup_django(force_db=args.force_db)
    from django.conf import settings

    C.print_header(
        f"portal My points and widget data over gunicorn: {args.members} members x {args.lots} lots, "
        f"{args.connections} clients, {args.seconds:g} s per run (+{args.warmup:g} s warm-up)"
    )
    with C.Timer() as t:
        program = load(args.members, args.lots)
        items = sessions_and_tokens(program, args.sample, seed=12)
    counts = C.db_counts()
    print(
        f"loaded {counts['members']} members, {counts['entries']} entries, {len(items)} sessions in {t.seconds:.1f} s"
    )
    cookie = settings.SESSION_COOKIE_NAME
    kinds = {"points": f"GET /p/{SLUG}/ (My points, logged in)", "widget": f"GET /p/{SLUG}/widget/data?token="}
    # The pages name their stylesheets through the manifest storage: collect them first, as a
    # deployment does (into STATIC_ROOT, .data/static).
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=C.ROOT,
        env=BA.server_env(args.settings),
        check=True,
    )
    server = BA.Gunicorn(args.workers, args.threads or None, args.settings)
    rows = []
    try:
        for kind, label in kinds.items():
            top = run(
                server, kind, items, cookie, connections=args.connections, warmup=args.warmup, seconds=args.seconds
            )
            print(
                f"{kind:7s} max   {top['rate']:7.1f} req/s  p50 {top['p50']:6.1f} ms  p99 {top['p99']:6.1f} ms  "
                f"errors {top['errors']}  [{C.load_snapshot()}]",
                flush=True,
            )
            half = run(
                server,
                kind,
                items,
                cookie,
                connections=args.connections,
                warmup=args.warmup,
                seconds=args.seconds,
                rate=top["rate"] / 2,
            )
            print(
                f"{kind:7s} half  {half['rate']:7.1f} req/s  p50 {half['p50']:6.1f} ms  p99 {half['p99']:6.1f} ms  "
                f"errors {half['errors']}  [{C.load_snapshot()}]",
                flush=True,
            )
            for res in (top, half):
                if res["error_samples"]:
                    print("        first errors: " + " | ".join(res["error_samples"][:3]))
            rows.append((label, top, half))
    finally:
        server.stop()
    stmts = statements(items, cookie, args.profile) if args.profile else {}
    print()
    kind_of_worker = f"gthread x {args.threads}" if args.threads else "sync"
    print(
        f"RESULT {args.members} members, gunicorn {args.workers} {kind_of_worker} workers, {args.connections} clients:"
    )
    C.print_table(
        [
            "endpoint",
            "max req/s",
            "p50 ms",
            "p99 ms",
            "half-load req/s",
            "p99 ms at half",
            "errors",
            "statements (max)",
            "ms in-process",
        ],
        [
            (
                label,
                f"{top['rate']:.1f}",
                f"{top['p50']:.1f}",
                f"{top['p99']:.1f}",
                f"{half['rate']:.1f}",
                f"{half['p99']:.1f}",
                top["errors"] + half["errors"],
                f"{stmts[kind][0]:.1f} ({stmts[kind][1]})" if kind in stmts else "-",
                f"{stmts[kind][2]:.1f}" if kind in stmts else "-",
            )
            for (label, top, half), kind in zip(rows, kinds, strict=True)
        ],
    )
    for (label, _top, half), kind in zip(rows, kinds, strict=True):
        hit = half["p99"] < TARGET_MS and (kind not in stmts or stmts[kind][1] <= MAX_STATEMENTS)
        print(
            f"target {label}: p99 < {TARGET_MS:g} ms at half load and <= {MAX_STATEMENTS} statements: {C.verdict(hit)}"
        )


if __name__ == "__main__":
    main()
