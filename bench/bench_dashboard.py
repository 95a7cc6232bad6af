"""Issue 13: the dashboard's request time at 1,000,000 members and 10,000,000 ledger entries,
and the roll-up time of one day at that scale (docs/performance.md, docs/dashboard.md).

The page reads only the roll-ups and, for the members at risk, the members' balance index and
each candidate's recent-activity index. So the data is synthesised with set-based SQL
(generate_series), not posted through the services: 1,000,000 members with balances, one
recent activity for half of them, two years of `DailyStat` rows and their breakdowns (5
channels, 20 rewards, 10 rules, 3 tiers, 3 move kinds per day), and --entries earn entries
spread over the last year (10,000,000 by default) for the roll-up of one day.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench_dash .venv/bin/python bench/bench_dashboard.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    add_common_args,
    bench_program,
    execute,
    insert_members,
    print_header,
    print_table,
    reset_ledger,
    scalar,
    setup_django,
    verdict,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=730, help="Days of roll-ups (the page's longest range).")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    setup_django(force_db=args.force_db)
    print_header(f"dashboard: {args.members:,} members, {args.entries:,} entries, {args.days} days of roll-ups")

    from django.contrib.auth import get_user_model
    from django.test import Client

    from dashboard import rollups

    reset_ledger()
    execute("TRUNCATE dashboard_dailystat, dashboard_dailybreakdown")
    program = bench_program(timezone="Europe/Paris")
    today = program.local_date(dt.datetime.now(dt.UTC))
    t = time.perf_counter()
    insert_members(program.pk, args.members, {"available": "(i::bigint * 7919) %% 5000"})
    execute(
        "INSERT INTO loyalty_activity (program_id, member_id, type, occurred_at, reported_at, order_id, currency, "
        "channel, items, data) SELECT %(p)s, i, 'store_visit', now() - (i %% 120) * interval '1 day', now(), '', "
        "'', '', '[]', '{}' FROM generate_series(2, %(n)s, 2) AS i",
        {"p": program.pk, "n": args.members},
    )
    first = today - dt.timedelta(days=args.days)
    execute(
        "INSERT INTO dashboard_dailystat (program_id, day, enrolments, members, active_30, active_90, earned, "
        "redeemed, expired, adjusted_up, adjusted_down, reversed, restored, transferred, available, pending, debt, "
        "redemptions, purchases, revenue, computed_at) "
        "SELECT %(p)s, d::date, 1000 + k %% 300, 300000 + k * 1000, 200000 + k * 300, 400000 + k * 400, "
        "400000 + k %% 7 * 1000, 150000, 20000, 500, 300, 2000, 100, 0, 5000000 + k * 1000, 300000, 1000, "
        "900, 27000 + k %% 50, 810000.00, now() "
        "FROM generate_series(%(d0)s::date, %(d1)s::date, '1 day') WITH ORDINALITY AS s(d, k)",
        {"p": program.pk, "d0": first, "d1": today - dt.timedelta(days=2)},
    )
    execute(
        "INSERT INTO dashboard_dailybreakdown (program_id, day, dimension, key, count, points) "
        "SELECT %(p)s, d::date, dim, key, 10 + (k * 7) %% 90, (10 + (k * 7) %% 90) * 100 "
        "FROM generate_series(%(d0)s::date, %(d1)s::date, '1 day') WITH ORDINALITY AS s(d, k) "
        "CROSS JOIN (SELECT 'channel', c FROM unnest(ARRAY['online','pos','admin','import','api']) c "
        "  UNION ALL SELECT 'reward', g::text FROM generate_series(1, 20) g "
        "  UNION ALL SELECT 'rule', g::text FROM generate_series(1, 10) g "
        "  UNION ALL SELECT 'tier', g::text FROM generate_series(1, 3) g "
        "  UNION ALL SELECT 'tier_move', m FROM unnest(ARRAY['join','upgrade','downgrade']) m) AS x(dim, key)",
        {"p": program.pk, "d0": first, "d1": today - dt.timedelta(days=2)},
    )
    if args.entries:
        # Earn entries spread evenly over the last year, in time order (as the ledger grows).
        execute(
            "INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, occurred_at, "
            "available_at, released_at, expires_at, reason, reference) "
            "SELECT %(p)s, 1 + i %% %(m)s, 'earn', 10, 10, ts, ts, ts, ts, ts + interval '365 days', '', '' "
            "FROM generate_series(1, %(n)s) AS i, "
            "LATERAL (SELECT now() - interval '365 days' + i * (interval '365 days' / %(n)s)) AS t(ts)",
            {"p": program.pk, "m": args.members, "n": args.entries},
        )
    execute("ANALYZE")
    load = time.perf_counter() - t
    print(f"data load: {load:.0f} s")

    user = get_user_model().objects.filter(username="bench-staff").first() or get_user_model().objects.create_superuser(
        "bench-staff", "bench@example.com", "bench-pass-1"
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    start = today - dt.timedelta(days=args.days - 1)
    query = {"program": program.pk, "start": start.isoformat(), "end": today.isoformat(), "bucket": "week"}
    charts = ("enrolment", "active", "points", "redemption_rate", "outstanding", "rewards", "tiers",
              "tier_moves", "rules", "revenue", "frequency")  # fmt: skip

    def timed(path: str, q: dict) -> float:
        t0 = time.perf_counter()
        r = client.get(path, q)
        assert r.status_code == 200, (path, r.status_code)
        return time.perf_counter() - t0

    timed("/admin/dashboard/", query)  # warm-up
    rows = []
    page = [timed("/admin/dashboard/", query) for _ in range(args.repeat)]
    rows.append(
        [
            "page (KPIs, at-risk list), 2 years per week",
            f"{statistics.median(page) * 1000:.0f}",
            f"{max(page) * 1000:.0f}",
        ]
    )
    svg = [sum(timed(f"/admin/dashboard/chart/{c}.svg", query) for c in charts) for _ in range(args.repeat)]
    rows.append(
        [
            f"all {len(charts)} chart SVGs, one after the other",
            f"{statistics.median(svg) * 1000:.0f}",
            f"{max(svg) * 1000:.0f}",
        ]
    )
    csv_ = [timed("/admin/dashboard/chart/points.csv", {**query, "bucket": "day"}) for _ in range(args.repeat)]
    rows.append(["one CSV, 2 years per day", f"{statistics.median(csv_) * 1000:.0f}", f"{max(csv_) * 1000:.0f}"])
    print_table(["request", "median ms", "max ms"], rows)
    print(f"page < 1 s: {verdict(statistics.median(page) < 1)}")

    # One day's roll-up at this scale: the day before yesterday's row exists, yesterday is due.
    t0 = time.perf_counter()
    result = rollups.rollup_program(program)
    took = time.perf_counter() - t0
    entries = scalar("SELECT count(*) FROM loyalty_ledgerentry")
    print(f"roll-up of one day ({result}): {took:.2f} s over {entries:,} entries")


if __name__ == "__main__":
    main()
