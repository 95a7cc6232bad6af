"""Nightly tier evaluation: `tiers.services.tiers_evaluate` (what `manage.py evaluate_tiers`
runs: set-based SQL per chunk of members, one transaction each) against ONE hand-written SQL
statement doing the same work (the metric of every member over the window, the tier each
reaches, upgrades / downgrades after retention / ended manual tiers, the `tiers_membertier`
upserts and the `tiers_tierchange` history rows), each from the same state. Target (issue 5):
the service under 120 s for 1,000,000 members and 10,000,000 activities.

Data (generated in SQL, consistent with the ledger so verify_ledger passes): one program with
3 tiers (Silver 500, Gold 2,000, Platinum 8,000 points; retention 365 days), metric
`--metric` (default points_earned: earn entries) over a rolling 365-day window; `--activities`
purchase activities, each with its earn entry (released lot, no expiry), spread evenly over
the 540 days before NOW in time order, each at a pseudo-random member (`--members`), so a
member's entries are scattered over the tables as in production. Points per member follow 5
levels (some reach no tier, some each tier), +-20% per activity. The members' starting tiers
are drawn independently of their metric: some upgrade, some downgrade (retention passed for
2/3 of them), 1% have a manual tier that ended, 1% one still running.

Both runs start from the same state (tier tables reset, VACUUM ANALYZE, CHECKPOINT) and must
leave identical tier tables (compared by digest).

    .venv/bin/python bench/bench_tiers.py [--members 1000000] [--activities 10000000] [--reuse]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TARGET_SECONDS = 120.0
SPAN_DAYS = 540
WINDOW_DAYS = 365
LOAD_CHUNK = 1_000_000
TIER_TABLES = ("tiers_membertier", "tiers_tierchange", "tiers_tier")
DATA_TABLES = ("loyalty_member", "loyalty_activity", "loyalty_ledgerentry")
TIERS = (  # name, position, threshold, multiplier
    ("Silver", 1, 500, "1.25"),
    ("Gold", 2, 2000, "1.5"),
    ("Platinum", 3, 8000, "2"),
)

# Activity n (1..A): member ((n-1) * K mod M) + 1 (K coprime to M: every member gets A/M or
# A/M + 1 activities, scattered over the table), dated in time order over SPAN_DAYS before NOW,
# points = level(member) x (0.8 .. 1.2). Its earn entry has the same id.
_ROW = f"""
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS n,
LATERAL (SELECT ((n - 1) * %(k)s) %% %(m)s + 1 AS member,
                %(now)s - interval '{SPAN_DAYS} days' + make_interval(secs => n * %(step)s) AS t) AS a,
LATERAL (SELECT (CASE (a.member * 37) %% 10
                   WHEN 0 THEN 10 WHEN 1 THEN 10 WHEN 2 THEN 10 WHEN 9 THEN 50
                   WHEN 3 THEN 100 WHEN 4 THEN 100 WHEN 5 THEN 400 WHEN 6 THEN 400
                   ELSE 1500 END) * (8 + n %% 5) / 10 AS pts) AS b
"""

ACTIVITY_SQL = (
    "INSERT INTO loyalty_activity (id, program_id, member_id, type, occurred_at, reported_at, order_id, amount, "
    "currency, channel, items, data) "
    "SELECT n, %(p)s, a.member, 'purchase', a.t, a.t, 'o' || n, b.pts::numeric(14, 2), 'EUR', 'online', "
    "'[]'::jsonb, '{}'::jsonb " + _ROW
)
ENTRY_SQL = (
    "INSERT INTO loyalty_ledgerentry (id, program_id, member_id, kind, points, remaining, created_at, occurred_at, "
    "available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, created_by_id) "
    "SELECT n, %(p)s, a.member, 'earn', b.pts, b.pts, a.t, a.t, a.t, a.t, NULL, 'Purchase', 'o' || n, n, NULL, NULL "
    + _ROW
)
# Members last, with the balances their entries give (available = lifetime = sum of points).
MEMBER_SQL = """
INSERT INTO loyalty_member (id, program_id, external_id, email, first_name, last_name, birthday, referral_code,
    referred_by_id, status, enrollment_channel, email_consent, user_id, enrolled_at,
    available, pending, lifetime_earned, redeemed, expired)
SELECT i, %(p)s, 'bench-' || i, 'm' || i || '@bench.invalid', 'Bench', 'Member ' || i, NULL, 'B' || i, NULL,
       'active', 'import', false, NULL, %(now)s - interval '600 days',
       coalesce(s.total, 0), 0, coalesce(s.total, 0), 0, 0
FROM generate_series(1, %(m)s) AS i
LEFT JOIN (SELECT member_id, sum(points) AS total FROM loyalty_ledgerentry GROUP BY member_id) s
       ON s.member_id = i
"""

# The starting tiers, independent of the metric: c = (i * 13) mod 8: 0-1 no row, 2 a row
# without tier, 3-4 Silver, 5-6 Gold, 7 Platinum. Retention passed except for i mod 3 = 0.
# i mod 100 = 1: a manual tier that ended yesterday; i mod 100 = 2: one running 30 more days.
STATE_SQL = """
INSERT INTO tiers_membertier (member_id, tier_id, since, retain_until, manual_until, manual_reason)
SELECT i,
       CASE WHEN c IN (3, 4) THEN %(t1)s WHEN c IN (5, 6) THEN %(t2)s WHEN c = 7 THEN %(t3)s END,
       %(now)s - interval '400 days',
       CASE WHEN c < 3 OR i %% 100 IN (1, 2) THEN NULL
            WHEN i %% 3 = 0 THEN %(now)s + interval '60 days' ELSE %(now)s - interval '1 day' END,
       CASE i %% 100 WHEN 1 THEN %(now)s - interval '1 day' WHEN 2 THEN %(now)s + interval '30 days' END,
       CASE WHEN i %% 100 IN (1, 2) THEN 'bench manual tier' ELSE '' END
FROM generate_series(1, %(m)s) AS i, LATERAL (SELECT (i * 13) %% 8 AS c) AS x
WHERE c >= 2 OR i %% 100 IN (1, 2)
"""

# The metric of every member of the program over [start, now] (the same definitions as
# tiers.selectors.METRIC_SQL, without the member-id range).
HAND_METRIC = {
    "points_earned": """
        SELECT member_id, sum(points)::numeric AS value FROM loyalty_ledgerentry
        WHERE program_id = %(program)s AND (kind = 'earn' OR (kind = 'reversal' AND points < 0))
          AND occurred_at <= %(now)s AND occurred_at >= %(start)s
        GROUP BY member_id""",
    "amount_spent": """
        SELECT member_id,
               sum(CASE WHEN type = 'refund' THEN -coalesce(amount, 0) ELSE coalesce(amount, 0) END) AS value
        FROM loyalty_activity
        WHERE program_id = %(program)s AND type IN ('purchase', 'refund')
          AND occurred_at <= %(now)s AND occurred_at >= %(start)s
        GROUP BY member_id""",
    "order_count": """
        SELECT member_id, count(*)::numeric AS value FROM loyalty_activity
        WHERE program_id = %(program)s AND type = 'purchase' AND occurred_at <= %(now)s AND occurred_at >= %(start)s
        GROUP BY member_id""",
}

# ONE statement: metric per member, the highest tier reached, the decision (same rules as the
# service: a running manual tier is left alone, an ended one is re-evaluated; upgrades at once;
# downgrades once retention passed), the upserts and the history rows.
HAND_SQL = """
WITH tiers AS (
    SELECT id, position, threshold, retention_days FROM tiers_tier WHERE program_id = %(program)s AND is_active
), metric AS ({metric}
), state AS (
    SELECT m.id AS member_id, coalesce(x.value, 0) AS value, mt.tier_id AS cur_tier, ct.position AS cur_pos,
           mt.retain_until, mt.manual_until, q.id AS q_tier, q.position AS q_pos, q.retention_days AS q_ret
    FROM loyalty_member m
    LEFT JOIN metric x ON x.member_id = m.id
    LEFT JOIN tiers_membertier mt ON mt.member_id = m.id
    LEFT JOIN tiers_tier ct ON ct.id = mt.tier_id
    LEFT JOIN LATERAL (SELECT t.id, t.position, t.retention_days FROM tiers t
                       WHERE t.threshold <= coalesce(x.value, 0) ORDER BY t.position DESC LIMIT 1) q ON true
    WHERE m.program_id = %(program)s
), due AS (
    SELECT * FROM (
        SELECT *, CASE
            WHEN manual_until IS NOT NULL AND manual_until <= %(now)s THEN 'manual_expired'
            WHEN manual_until IS NOT NULL THEN NULL
            WHEN q_tier IS NOT NULL AND (cur_tier IS NULL OR q_pos > cur_pos) THEN 'upgrade'
            WHEN cur_tier IS NOT NULL AND (q_tier IS NULL OR q_pos < cur_pos)
                 AND (retain_until IS NULL OR retain_until <= %(now)s) THEN 'downgrade'
        END AS kind FROM state) s
    WHERE kind IS NOT NULL
), upserted AS (
    INSERT INTO tiers_membertier AS mt (member_id, tier_id, since, retain_until, manual_until, manual_reason)
    SELECT member_id, q_tier, %(now)s, CASE WHEN q_tier IS NOT NULL THEN %(now)s + q_ret * interval '1 day' END,
           NULL, ''
    FROM due
    ON CONFLICT (member_id) DO UPDATE SET
        since = CASE WHEN mt.tier_id IS NOT DISTINCT FROM EXCLUDED.tier_id THEN mt.since ELSE EXCLUDED.since END,
        tier_id = EXCLUDED.tier_id, retain_until = EXCLUDED.retain_until, manual_until = NULL, manual_reason = ''
)
INSERT INTO tiers_tierchange (member_id, from_tier_id, to_tier_id, kind, metric_value, actor_id, at, reason)
SELECT member_id, cur_tier, q_tier, kind, value, NULL, %(now)s, 'nightly evaluation' FROM due
"""

DIGEST_SQL = """
SELECT (SELECT count(*) FROM tiers_membertier),
       (SELECT md5(string_agg(concat_ws(':', member_id, tier_id, since, retain_until, manual_until, manual_reason),
                              ',' ORDER BY member_id)) FROM tiers_membertier),
       (SELECT count(*) FROM tiers_tierchange),
       (SELECT md5(string_agg(concat_ws(':', member_id, from_tier_id, to_tier_id, kind, metric_value, at, reason),
                              ',' ORDER BY member_id, id)) FROM tiers_tierchange),
       (SELECT string_agg(kind || '=' || n, ' ' ORDER BY kind)
          FROM (SELECT kind, count(*) AS n FROM tiers_tierchange GROUP BY kind) k)
"""


MODES = {
    "service": "tiers_evaluate(now=NOW) in this process, as the code is (signals and their receivers included)",
    "sql": "ONE hand-written statement (HAND_SQL) in one transaction",
    "command": "manage.py evaluate_tiers --now NOW (call_command, in this process)",
    "service_nosignals": "EXPERIMENT: tiers_evaluate with the tier_changed receivers disconnected (this process)",
    "service_nojit": "EXPERIMENT: service_nosignals with SET jit = off in the session",
}


def tier_changed_receivers() -> list[str]:
    from tiers.signals import tier_changed

    sync, _async = tier_changed._live_receivers(None)
    return [f"{r.__module__}.{r.__qualname__}" for r in sync]


@contextlib.contextmanager
def receivers_off(off: bool):
    """EXPERIMENT (process-local): no receiver of `tier_changed` runs while `off`."""
    from tiers.signals import tier_changed

    if not off:
        yield
        return
    saved = tier_changed.receivers
    tier_changed.receivers = []
    tier_changed.sender_receivers_cache.clear()
    try:
        yield
    finally:
        tier_changed.receivers = saved
        tier_changed.sender_receivers_cache.clear()


def coprime_step(members: int) -> int:
    for k in (7919, 7927, 7933, 7937, 7949):
        if math.gcd(k, members) == 1:
            return k
    return 1


def setup_program(members: int, activities: int, metric: str, now: dt.datetime):
    from loyalty.models import Program
    from tiers.models import Tier
    from tiers.services import tier_create

    program = C.bench_program(
        "bench-tiers",
        name=f"Bench tiers {members}x{activities} as of {now.isoformat()}",
        expiry_days=None,
        pending_days=0,
        tier_metric=metric,
        tier_window=Program.TierWindow.ROLLING,
        tier_window_days=WINDOW_DAYS,
    )
    tiers = {t.position: t for t in Tier.objects.filter(program=program)}
    for name, position, threshold, multiplier in TIERS:
        if position not in tiers:
            tiers[position] = tier_create(
                program=program,
                name=name,
                position=position,
                threshold=threshold,
                multiplier=multiplier,
                retention_days=365,
            )
    return program, tiers


@contextlib.contextmanager
def fast_load():
    """For generating data only (never while timing): this session skips the FK triggers
    (session_replication_role = replica; Django's FKs are deferred row-by-row checks) and does
    not wait for WAL flushes. The generated rows are consistent by construction."""
    C.execute("SET session_replication_role = replica")
    C.execute("SET synchronous_commit = off")
    try:
        yield
    finally:
        C.execute("RESET session_replication_role")
        C.execute("RESET synchronous_commit")


def load_data(program_id: int, members: int, activities: int, now: dt.datetime) -> None:
    """Generate members, activities and entries (FK triggers off in this session: the rows are
    consistent by construction; row-by-row deferred FK checks of 20M rows would take ~10 min)."""
    C.reset_ledger()
    C.execute("TRUNCATE tiers_tierchange, tiers_membertier")
    params = {
        "p": program_id,
        "m": members,
        "k": coprime_step(members),
        "now": now,
        "step": SPAN_DAYS * 86400.0 / max(activities, 1),
    }
    from django.db import transaction

    with fast_load():
        for sql, label in ((ACTIVITY_SQL, "activities"), (ENTRY_SQL, "entries")):
            with C.Timer() as t:
                for lo in range(1, activities + 1, LOAD_CHUNK):
                    hi = min(lo + LOAD_CHUNK - 1, activities)
                    with transaction.atomic():
                        C.execute(sql, {**params, "lo": lo, "hi": hi})
                    print(f"  {label} {hi:,}/{activities:,}", flush=True)
            print(f"load: {activities:,} {label} in {t.seconds:.1f} s  [{C.load_snapshot()}]", flush=True)
        with C.Timer() as t:
            C.execute(MEMBER_SQL, params)
        print(f"load: {members:,} members with their balances in {t.seconds:.1f} s", flush=True)
    C.execute("SELECT setval(pg_get_serial_sequence('loyalty_member', 'id'), %s)", [max(members, 1)])
    C.execute(
        "SELECT setval(pg_get_serial_sequence('loyalty_activity', 'id'), "
        "coalesce((SELECT max(id) FROM loyalty_activity), 0) + 1, false)"
    )
    C.fix_entry_sequence()
    with C.Timer() as t:
        C.settle_database(DATA_TABLES)
    print(f"load: VACUUM ANALYZE + CHECKPOINT of the data in {t.seconds:.1f} s", flush=True)


def reset_tiers(tiers: dict, members: int, now: dt.datetime) -> None:
    C.execute("TRUNCATE tiers_tierchange, tiers_membertier")
    with fast_load():
        C.execute(STATE_SQL, {"m": members, "now": now, "t1": tiers[1].id, "t2": tiers[2].id, "t3": tiers[3].id})
    C.settle_database(TIER_TABLES)


def expected_changes(program, now: dt.datetime) -> str:
    """Upgrades / downgrades the rules give for the generated state (a read-only count)."""
    from tiers.selectors import window_start

    sql = HAND_SQL.split("), upserted AS")[0]
    sql = sql.format(metric=HAND_METRIC[program.tier_metric]) + ") SELECT kind, count(*) FROM due GROUP BY kind"
    with C.cursor() as cur:
        cur.execute(sql, {"program": program.id, "now": now, "start": window_start(program=program, now=now)})
        rows = sorted(cur.fetchall())
    return " ".join(f"{k}={n}" for k, n in rows) or "none"


def run_hand_sql(program, now: dt.datetime) -> float:
    from django.db import transaction

    from tiers.selectors import window_start

    sql = HAND_SQL.format(metric=HAND_METRIC[program.tier_metric])
    params = {"program": program.id, "now": now, "start": window_start(program=program, now=now)}
    with C.Timer() as t, transaction.atomic():
        C.execute(sql, params)
    return t.seconds


def service_step(sql: str) -> str:
    s = " ".join(sql.split())
    if s.startswith("SELECT MIN(id), MAX(id)"):
        return "chunk bounds (min/max)"
    if "OFFSET" in s:
        return "chunk bounds (OFFSET)"
    if "FOR UPDATE" in s and s.startswith("SELECT member_id FROM tiers_membertier"):
        return "lock the chunk's tier rows"
    if s.startswith("WITH tiers AS"):
        return "evaluate statement (metric + writes)"
    if "SAVEPOINT" in s or s in ("COMMIT", "BEGIN"):
        return "transaction control"
    return "other: " + s[:50]


def run_service(now: dt.datetime, chunk: int | None, breakdown: dict[str, list[float]], jit: bool = True):
    """`jit=False`: EXPERIMENT, `SET jit = off` in this session for the run (what a
    `SET LOCAL jit = off` in `tiers.services._evaluate_chunk` would do); nothing on disk changes."""
    from django.db import connection

    from tiers.services import tiers_evaluate

    if not jit:
        C.execute("SET jit = off")
        try:
            return run_service(now, chunk, breakdown)
        finally:
            C.execute("RESET jit")

    def wrapper(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            breakdown[service_step(sql)].append(time.perf_counter() - t0)

    # COMMIT does not pass through execute wrappers: time it apart (it runs the deferred FK
    # checks of the rows written: Django creates foreign keys DEFERRABLE INITIALLY DEFERRED).
    commit = connection._commit

    def timed_commit():
        t0 = time.perf_counter()
        try:
            return commit()
        finally:
            breakdown["COMMIT (deferred FK checks)"].append(time.perf_counter() - t0)

    kwargs = {"chunk_size": chunk} if chunk else {}
    connection._commit = timed_commit
    try:
        with connection.execute_wrapper(wrapper), C.Timer() as t:
            result = tiers_evaluate(now=now, **kwargs)
    finally:
        del connection._commit
    return t.seconds, result


def run_command(now: dt.datetime, chunk: int | None) -> tuple[float, str]:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    args = ["evaluate_tiers", "--now", now.isoformat()]
    if chunk:
        args += ["--chunk-size", str(chunk)]
    with C.Timer() as t:
        call_command(*args, stdout=out)
    return t.seconds, out.getvalue().strip()


def digest() -> tuple:
    with C.cursor() as cur:
        cur.execute(DIGEST_SQL)
        return cur.fetchone()


def explain_first_chunk(program, now: dt.datetime, chunk: int) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the service's statement for its first chunk, rolled back."""
    from django.db import connection, transaction

    from tiers import selectors
    from tiers.services import _EVALUATE_SQL

    class _Rollback(Exception):
        pass

    sql = _EVALUATE_SQL.format(metric=selectors.METRIC_SQL[program.tier_metric])
    params = {
        "program": program.id,
        "lo": 1,
        "hi": 1 + chunk,
        "now": now,
        "start": selectors.window_start(program=program, now=now),
    }
    out: list[str] = []
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            out = [r[0] for r in cur.fetchall()]
            raise _Rollback
    except _Rollback:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--activities", type=int, default=10_000_000)
    parser.add_argument("--metric", choices=list(HAND_METRIC), default="points_earned")
    parser.add_argument("--chunk", type=int, default=None, help="the service's chunk_size (default: its own)")
    parser.add_argument("--reuse", action="store_true", help="keep the generated data if its sizes match")
    parser.add_argument("--order", choices=["service-first", "sql-first"], default="service-first")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each")
    parser.add_argument(
        "--command", action="store_true", help="also time `manage.py evaluate_tiers --now` (call_command)"
    )
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the service's first chunk")
    parser.add_argument(
        "--nojit",
        action="store_true",
        help="EXPERIMENT: also time the service with SET jit = off in its session (mode service_nojit)",
    )
    parser.add_argument("--modes", help=f"comma list of {', '.join(MODES)} (overrides --order, --command, --nojit)")
    parser.add_argument(
        "--no-idempotency-check", action="store_true", help="skip the second service run as of the same NOW"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip verify_ledger after the load")
    C.add_common_args(parser)
    args = parser.parse_args()

    C.setup_django(force_db=args.force_db)
    from loyalty.models import Program

    C.print_header(
        f"tier evaluation: {args.members:,} members, {args.activities:,} activities, metric {args.metric}, "
        f"rolling {WINDOW_DAYS} days"
    )
    existing = Program.objects.filter(slug="bench-tiers").first()
    reuse = False
    if args.reuse and existing and existing.name.startswith(f"Bench tiers {args.members}x{args.activities} as of "):
        now = dt.datetime.fromisoformat(existing.name.rsplit(" as of ", 1)[1])
        counts = C.scalar("SELECT count(*) FROM loyalty_activity"), C.scalar("SELECT count(*) FROM loyalty_member")
        reuse = counts == (args.activities, args.members)
    if not reuse:
        now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    program, tiers = setup_program(args.members, args.activities, args.metric, now)
    if program.tier_metric != args.metric:
        Program.objects.filter(pk=program.pk).update(tier_metric=args.metric)
        program.refresh_from_db()
    print(f"NOW = {now.isoformat()}; tiers: " + ", ".join(f"{t.name} >= {t.threshold}" for t in tiers.values()))
    if reuse:
        print("data: reused (--reuse, sizes match)")
    else:
        with C.Timer() as t:
            load_data(program.id, args.members, args.activities, now)
        print(f"data generated in {t.seconds:.1f} s")
        if not args.no_verify:
            problems, seconds, first = C.ledger_check()
            print(f"verify_ledger (ledger_problems()): {problems} problems in {seconds:.1f} s {first}")
            if problems:
                raise SystemExit("the generated ledger does not verify")
    sizes = C.scalar(
        "SELECT pg_size_pretty(pg_total_relation_size('loyalty_activity')) || ' activities, ' || "
        "pg_size_pretty(pg_total_relation_size('loyalty_ledgerentry')) || ' entries (with indexes)'"
    )
    print(f"data: {sizes}")
    reset_tiers(tiers, args.members, now)
    print(f"expected changes: {expected_changes(program, now)}")
    print()

    modes = ["service", "sql"] if args.order == "service-first" else ["sql", "service"]
    if args.command:
        modes.append("command")
    if args.nojit:
        modes.append("service_nojit")
    if args.modes:
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        unknown = set(modes) - set(MODES)
        if unknown or ("service" not in modes and "service_nosignals" not in modes) or "sql" not in modes:
            parser.error(f"--modes: a comma list of {', '.join(MODES)} with sql and a service mode")
    for mode in modes:
        print(f"  {mode:18s} {MODES[mode]}")
    print(f"tier_changed receivers connected: {', '.join(tier_changed_receivers()) or 'none'}")
    print()
    main_service = "service" if "service" in modes else "service_nosignals"
    runs: list[tuple[str, float, str]] = []
    digests: dict[str, tuple] = {}
    breakdown: dict[str, list[float]] = defaultdict(list)
    for r in range(args.repeat):
        for mode in modes:
            reset_tiers(tiers, args.members, now)
            before = C.load_snapshot()
            if mode.startswith("service"):
                if mode == main_service:
                    breakdown.clear()
                with receivers_off(mode != "service"):
                    seconds, result = run_service(
                        now,
                        args.chunk,
                        breakdown if mode == main_service else defaultdict(list),
                        jit=mode != "service_nojit",
                    )
                note = (
                    f"{result.upgrades} up, {result.downgrades} down, {result.manual_expired} manual ended, "
                    f"{result.chunks} chunks"
                )
            elif mode == "command":
                seconds, note = run_command(now, args.chunk)
            else:
                seconds = run_hand_sql(program, now)
                note = "one statement"
            d = digest()
            runs.append((mode, seconds, note))
            print(f"run {r + 1} {mode:8s} {seconds:8.2f} s  {note}  changes: {d[4]}  [{before}]", flush=True)
            if mode in digests and digests[mode] != d:
                raise SystemExit(f"{mode}: different result from its previous run")
            digests[mode] = d
    print()
    first = digests[modes[0]]
    same = all(d[:4] == first[:4] for d in digests.values())
    print(
        f"tier tables after each mode: {first[0]} member tier rows, {first[2]} history rows; "
        f"identical digests across modes: {same}"
    )
    if not same:
        for mode, d in digests.items():
            print(f"  {mode}: {d}")
        raise SystemExit("the service and the statement disagree")

    if not args.no_idempotency_check:
        # A second run as of the same moment must change nothing.
        seconds2, result2 = run_service(now, args.chunk, defaultdict(list))
        print(
            f"second service run as of the same NOW: {result2.members} changes in {seconds2:.1f} s "
            f"({'idempotent' if result2.members == 0 else 'NOT idempotent'})"
        )
        print()

    rows = []
    best = {}
    for mode in modes:
        times = [s for m, s, _ in runs if m == mode]
        best[mode] = min(times)
        rows.append((mode, f"{min(times):.2f}", " / ".join(f"{s:.2f}" for s in times)))
    print(f"RESULT tier evaluation, {args.members:,} members, {args.activities:,} activities ({args.metric}):")
    C.print_table(["mode", "best s", "runs s"], rows)
    for mode in modes:
        if mode != "sql":
            print(f"ratio {mode} / one statement = {best[mode] / best['sql']:.2f}x")
    hit = best[main_service] < TARGET_SECONDS
    target = f"target {main_service} < {TARGET_SECONDS:.0f} s: {C.verdict(hit)}"
    if (args.members, args.activities) != (1_000_000, 10_000_000):
        target += " (the target is set for 1,000,000 members and 10,000,000 activities)"
    print(target)
    print()
    print(f"where {main_service}'s time went (its last run, statements timed by an execute wrapper):")
    total = sum(sum(v) for v in breakdown.values())
    brows = [
        (step, len(v), f"{sum(v):.2f}", f"{max(v):.3f}" if v else "-")
        for step, v in sorted(breakdown.items(), key=lambda kv: -sum(kv[1]))
    ]
    service_s = [s for m, s, _ in runs if m == main_service][-1]
    brows.append(("Python, signals, rest", "-", f"{service_s - total:.2f}", "-"))
    C.print_table(["step", "statements", "seconds", "slowest s"], brows)
    if args.explain:
        reset_tiers(tiers, args.members, now)
        chunk = args.chunk or 20_000
        print(f"EXPLAIN (ANALYZE, BUFFERS) of the service's statement for members [1, {1 + chunk}) (rolled back):")
        print("\n".join(explain_first_chunk(program, now, chunk)))


if __name__ == "__main__":
    main()
