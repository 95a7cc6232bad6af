"""Issue 14: replay of 1,000,000 stored purchases against a draft of 5 rules
(`workflows.simulation.replay`), beside ONE hand-written SQL statement computing the same
per-rule totals, in the same run (docs/performance.md, docs/simulation.md).

The data is synthesised with set-based SQL (generate_series): --members members, --purchases
purchases over the last 30 days (amounts 5.00-154.99, online or pos, no items), each with the
earn entry a 1-point-per-unit live rule gave it (the replay reads them to compare). The draft is
5 unsaved `EarningRule` objects: points per unit, weekend x2, a pos visit bonus of 15 capped
at 20 a day per member, a big-basket bonus from 60.00, and an online campaign x0.5 over 10 days.
The statement computes the same per-rule totals (the daily cap as min(20, 15 x visits) per
member and day); the bench checks that both agree.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_simulate_bench .venv/bin/python bench/bench_simulate.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from decimal import Decimal
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
    settle_database,
    setup_django,
    verdict,
)

SQL_TOTALS = """
WITH a AS (
    SELECT member_id, amount, channel, occurred_at,
           (occurred_at AT TIME ZONE %(tz)s)::date AS day
    FROM loyalty_activity
    WHERE program_id = %(p)s AND type = 'purchase' AND occurred_at >= %(since)s AND occurred_at < %(until)s
), visits AS (
    SELECT least(20, 15 * count(*)) AS points FROM a WHERE channel = 'pos' GROUP BY member_id, day
)
SELECT
    (SELECT sum(floor(amount))::bigint FROM a),
    (SELECT coalesce(sum(floor(amount * 2)), 0)::bigint FROM a WHERE extract(isodow FROM day) IN (6, 7)),
    (SELECT coalesce(sum(points), 0)::bigint FROM visits),
    (SELECT 40 * count(*) FROM a WHERE amount >= 60),
    (SELECT coalesce(sum(floor(amount * 0.5)), 0)::bigint FROM a
      WHERE channel = 'online' AND occurred_at >= %(c0)s AND occurred_at < %(c1)s)
"""


def draft(program, campaign: tuple[dt.datetime, dt.datetime]):
    from workflows.models import EarningRule

    def rule(name: str, **fields):
        return EarningRule(program=program, name=name, trigger="purchase", **fields)

    return [
        rule("Points per unit", kind="per_amount", points=Decimal(1)),
        rule("Weekend x2", kind="per_amount", points=Decimal(1), multiplier=Decimal(2), days_of_week=[5, 6]),
        rule("Shop visit", kind="fixed", points=Decimal(15), channel="pos", cap_per_day=20),
        rule("Big basket", kind="fixed", points=Decimal(40), min_amount=Decimal(60)),
        rule(
            "Online campaign",
            kind="per_amount",
            points=Decimal(1),
            multiplier=Decimal("0.5"),
            channel="online",
            starts_at=campaign[0],
            ends_at=campaign[1],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--skip-load", action="store_true", help="Reuse the data of the previous run.")
    args = parser.parse_args()
    setup_django(force_db=args.force_db)
    print_header(f"simulate: replay of {args.purchases:,} purchases ({args.members:,} members), a draft of 5 rules")

    from django.db import connection

    from workflows import simulation

    program = bench_program(timezone="Europe/Paris", earn_rate=1)
    now = dt.datetime.now(dt.UTC)
    since, until = simulation.period_of_days(program=program, days=31, now=now)
    if not args.skip_load:
        t = time.perf_counter()
        reset_ledger()
        insert_members(program.pk, args.members)
        execute(
            "INSERT INTO loyalty_activity (program_id, member_id, type, occurred_at, reported_at, order_id, amount, "
            "currency, channel, items, data) "
            "SELECT %(p)s, 1 + (i * 7919) %% %(m)s, 'purchase', ts, ts, 'b' || i, 5 + (i * 104729 %% 15000) / 100.0, "
            "'EUR', CASE WHEN i %% 3 = 0 THEN 'pos' ELSE 'online' END, '[]', '{}' "
            "FROM generate_series(1::bigint, %(n)s::bigint) AS i, "
            "LATERAL (SELECT %(now)s::timestamptz - interval '30 days' + i * (interval '30 days' / %(n)s)) AS t(ts)",
            {"p": program.pk, "m": args.members, "n": args.purchases, "now": now},
        )
        execute(
            "INSERT INTO loyalty_ledgerentry (program_id, member_id, kind, points, remaining, created_at, occurred_at, "
            "available_at, released_at, expires_at, reason, reference, activity_id) "
            "SELECT program_id, member_id, 'earn', floor(amount)::bigint, floor(amount)::bigint, occurred_at, "
            "occurred_at, occurred_at, occurred_at, occurred_at + interval '365 days', 'Points per unit', order_id, id "
            "FROM loyalty_activity WHERE program_id = %(p)s",
            {"p": program.pk},
        )
        settle_database()
        print(f"data load: {time.perf_counter() - t:.0f} s")
    purchases = scalar("SELECT count(*) FROM loyalty_activity WHERE program_id = %s", [program.pk])
    campaign = (since + dt.timedelta(days=5), since + dt.timedelta(days=15))
    rules = draft(program, campaign)

    t = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            SQL_TOTALS,
            {
                "p": program.pk,
                "tz": program.timezone,
                "since": since,
                "until": until,
                "c0": campaign[0],
                "c1": campaign[1],
            },
        )
        sql_totals = list(cur.fetchone())
    sql_took = time.perf_counter() - t

    t = time.perf_counter()
    cpu = time.process_time()
    result = simulation.replay(program=program, since=since, until=until, rules_=rules)
    took = time.perf_counter() - t
    cpu = time.process_time() - cpu

    by_name = {r.name: r.points for r in result.rules}
    replay_totals = [by_name[r.name] for r in rules]
    print_table(
        ["rule", "replay", "SQL statement"],
        [(r.name, a, b) for r, a, b in zip(rules, replay_totals, sql_totals, strict=True)],
    )
    print_table(
        ["", "seconds", "activities/s"],
        [
            ("replay (simulation.replay)", f"{took:.1f}", f"{result.activities / took:,.0f}"),
            ("  of which CPU in this process", f"{cpu:.1f}", ""),
            ("one SQL statement (per-rule totals)", f"{sql_took:.1f}", f"{purchases / sql_took:,.0f}"),
        ],
    )
    print(f"activities replayed: {result.activities:,}; points {result.points:,} (live {result.live_points:,})")
    print(f"members affected: {result.members_affected:,}; liability difference {result.liability_difference:+,}")
    print(f"ratio replay / statement: {took / sql_took:.1f}x")
    print(f"totals agree: {verdict(replay_totals == sql_totals)}")
    print(f"replay < 60 s: {verdict(took < 60)}")


if __name__ == "__main__":
    main()
