"""The finance reports (dashboard.liability) over a generated ledger: by default 1,000,000
members and 10,000,000 entries (docs/performance.md, docs/liability.md).

Data (SQL generate_series, consistent: `verify`-style sums hold, the report reconciles): per
member 10 entries over the last two years: 7 earn lots, 1 redemption (all of lot 1 and half of
lot 3), 1 expiry (all of lot 2, expired a day after it was earned) and 1 staff credit of 5
points; 3 allocations. Open lots expire between tomorrow and 400 days from now (every aging
bucket filled). Members' cached balances equal their lots' remainders.

Timed: the liability report of the last twelve months (roll-forward, aging from the open lots,
the members' cached balances), each part alone, then the aging of a past day (rebuilt from
allocations), breakage and deferred revenue.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_liability_bench \\
        .venv/bin/python bench/bench_liability.py [--members 1000000] [--repeat 2] [--skip-load]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

PER_MEMBER = 10
P = "(2 + ((m * 31 + {k} * 17) %% 99))"  # the points of lot k of member m
ENTRIES_SQL = f"""
INSERT INTO loyalty_ledgerentry (id, program_id, member_id, kind, points, remaining, created_at, occurred_at,
    available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, created_by_id)
SELECT (m - 1) * {PER_MEMBER} + k, %(p)s, m,
       CASE k WHEN 8 THEN 'redeem' WHEN 9 THEN 'expire' WHEN 10 THEN 'adjust' ELSE 'earn' END,
       CASE k WHEN 8 THEN -({P.format(k=1)} + {P.format(k=3)} / 2) WHEN 9 THEN -{P.format(k=2)}
              WHEN 10 THEN 5 ELSE pk END,
       CASE k WHEN 1 THEN 0 WHEN 2 THEN 0 WHEN 3 THEN pk - pk / 2 WHEN 8 THEN 0 WHEN 9 THEN 0
              WHEN 10 THEN 5 ELSE pk END,
       t, t,
       CASE WHEN k IN (8, 9) THEN NULL ELSE t END,
       CASE WHEN k IN (8, 9) THEN NULL ELSE t END,
       CASE WHEN k IN (8, 9) THEN NULL WHEN k = 2 THEN t + interval '1 day'
            ELSE %(now)s + make_interval(days => 1 + (m * 7 + k * 13) %% 400) END,
       '', '', NULL, NULL, NULL
FROM generate_series(1, %(n)s) AS m,
     generate_series(1, {PER_MEMBER}) AS k,
     LATERAL (SELECT {P.replace("{k}", "k")} AS pk,
                     %(now)s - interval '720 days'
                       + CASE k WHEN 8 THEN interval '705 days' WHEN 9 THEN interval '706 days'
                                ELSE make_interval(days => (m * 13 + k * 53) %% 700) END AS t) AS v
"""
ALLOCATIONS_SQL = f"""
INSERT INTO loyalty_allocation (debit_id, lot_id, points, created_at)
SELECT (m - 1) * {PER_MEMBER} + d, (m - 1) * {PER_MEMBER} + l,
       CASE l WHEN 1 THEN {P.format(k=1)} WHEN 2 THEN {P.format(k=2)} ELSE {P.format(k=3)} / 2 END,
       %(now)s - interval '720 days' + CASE d WHEN 8 THEN interval '705 days' ELSE interval '706 days' END
FROM generate_series(1, %(n)s) AS m, (VALUES (8, 1), (9, 2), (8, 3)) AS x(d, l)
WHERE l <> 3 OR {P.format(k=3)} / 2 > 0
ORDER BY 1, 2
"""


def member_balances() -> dict[str, str]:
    p = {k: P.replace("m *", "i *").format(k=k) for k in range(1, 8)}
    held = f"({p[3]} - {p[3]} / 2) + {p[4]} + {p[5]} + {p[6]} + {p[7]} + 5"
    return {
        "available": held,
        "lifetime_earned": " + ".join(p[k] for k in range(1, 8)),
        "redeemed": f"{p[1]} + {p[3]} / 2",
        "expired": p[2],
    }


def load(program_id: int, members: int, now: dt.datetime) -> float:
    with C.Timer() as t:
        C.reset_ledger()
        C.insert_members(program_id, members, member_balances())
        C.execute(ENTRIES_SQL, {"p": program_id, "n": members, "now": now})
        C.execute(ALLOCATIONS_SQL, {"n": members, "now": now})
        C.fix_entry_sequence()
        C.settle_database(["loyalty_member", "loyalty_ledgerentry", "loyalty_allocation"])
    return t.seconds


def timed(label: str, repeat: int, work) -> tuple[str, str, str]:
    runs = []
    for _ in range(repeat):
        with C.Timer() as t:
            work()
        runs.append(t.seconds)
        print(f"  {label}: {t.seconds:.2f} s   [{C.load_snapshot()}]", flush=True)
    return label, f"{min(runs):.2f}", " / ".join(f"{x:.2f}" for x in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000, help=f"{PER_MEMBER} entries per member")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-load", action="store_true", help="reuse the data of the previous run")
    parser.add_argument("--slow", action="store_true", help="also time the past-day aging, breakage, deferred revenue")
    C.add_common_args(parser)
    args = parser.parse_args()

    C.setup_django(force_db=args.force_db)
    C.print_header(f"liability report: {args.members:,} members x {PER_MEMBER} entries")
    from decimal import Decimal

    from dashboard import liability

    program = C.bench_program(
        "bench-liability", expiry_days=365, point_value=Decimal("0.01"), expected_redemption_rate=Decimal("0.8")
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if not args.skip_load:
        seconds = load(program.id, args.members, now)
        print(f"loaded in {seconds:.1f} s (incl. VACUUM ANALYZE, CHECKPOINT)", flush=True)
    counts = C.db_counts()
    print(f"{counts['entries']:,} entries, {counts['allocations']:,} allocations, {counts['members']:,} members")

    today = program.local_date(now)
    start = (today.replace(day=1) - dt.timedelta(days=335)).replace(day=1)
    programs = [program]
    report = liability.liability_report(programs, start, today, now=now)
    item = report.currencies[0].programs[0]
    print(f"closing {item.closing:,} points, held {item.aging.held:,}, value {item.value} {program.currency}")
    if report.differences:
        raise SystemExit(f"the generated ledger does not reconcile: {report.differences}")

    rows = [
        timed(
            "liability report (all of it)",
            args.repeat,
            lambda: liability.liability_report(programs, start, today, now=now),
        ),
        timed("  roll-forward, 12 months", args.repeat, lambda: liability.rollforward(programs, start, today)),
        timed("  aging at today (open lots)", args.repeat, lambda: liability.aging(programs, today, now=now)),
        timed("  members' cached balances", args.repeat, lambda: liability.cached_balances(programs)),
    ]
    if args.slow:
        past = today - dt.timedelta(days=90)
        rows += [
            timed("aging of a past day (allocations)", 1, lambda: liability.aging(programs, past, now=now)),
            timed("breakage report", 1, lambda: liability.breakage_report(programs, start, today, now=now)),
            timed("deferred revenue", 1, lambda: liability.deferred_revenue_report(programs, start, today, now=now)),
        ]
    print()
    print(f"RESULT liability reports over {counts['entries']:,} entries, {counts['members']:,} members:")
    C.print_table(["what", "best s", "runs"], rows)


if __name__ == "__main__":
    main()
