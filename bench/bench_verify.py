"""verify_ledger over a generated ledger: `ledger_problems()` in-process and
`manage.py verify_ledger` as a command. Target: under 60 s for 1,000,000 entries.

Data (generated in SQL, consistent, all five balance kinds and allocations exercised): per
member, 4 earn lots (the 4th pending for even member ids) and 1 redemption that consumed the
whole 1st lot and half of the 2nd (2 allocations). Default 200,000 members = 1,000,000 entries
and 400,000 allocations.

    .venv/bin/python bench/bench_verify.py [--members 200000] [--chunk 200000] [--tamper]
        [--chunk-sweep 50000,10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TARGET_SECONDS = 60.0
PER_MEMBER = 5

# p_k = 2 + ((m * 31 + k * 17) % 99) is the points of lot k of member m.
P = "(2 + ((m * 31 + {k} * 17) %% 99))"
ENTRIES_SQL = f"""
INSERT INTO loyalty_ledgerentry (id, program_id, member_id, kind, points, remaining, created_at, occurred_at,
    available_at, released_at, expires_at, reason, reference, activity_id, source_entry_id, created_by_id)
SELECT i + 1, %(p)s, m,
       CASE WHEN k = 5 THEN 'redeem' ELSE 'earn' END,
       CASE WHEN k = 5 THEN -({P.format(k=1)} + {P.format(k=2)} / 2) ELSE pk END,
       CASE k WHEN 1 THEN 0 WHEN 2 THEN pk - pk / 2 WHEN 5 THEN 0 ELSE pk END,
       t, t,
       CASE WHEN k = 5 THEN NULL WHEN k = 4 AND m %% 2 = 0 THEN %(now)s + interval '10 days' ELSE t END,
       CASE WHEN k = 5 OR (k = 4 AND m %% 2 = 0) THEN NULL ELSE t END,
       CASE WHEN k = 5 THEN NULL ELSE %(now)s + interval '200 days' END,
       CASE WHEN k = 5 THEN 'bench redemption' ELSE 'bench lot' END, '', NULL, NULL, NULL
FROM generate_series(0, %(n)s * {PER_MEMBER} - 1) AS i,
     LATERAL (SELECT i / {PER_MEMBER} + 1 AS m, i %% {PER_MEMBER} + 1 AS k) AS mk,
     LATERAL (SELECT 2 + ((m * 31 + k * 17) %% 99) AS pk, %(now)s - interval '30 days' AS t) AS v
"""
ALLOCATIONS_SQL = f"""
INSERT INTO loyalty_allocation (debit_id, lot_id, points, created_at)
SELECT (m - 1) * {PER_MEMBER} + 5, (m - 1) * {PER_MEMBER} + k,
       CASE k WHEN 1 THEN {P.format(k=1)} ELSE {P.format(k=2)} / 2 END, %(now)s - interval '20 days'
FROM generate_series(1, %(n)s) AS m, generate_series(1, 2) AS k
ORDER BY 1, 2
"""


def member_balances() -> dict[str, str]:
    p = {k: P.replace("m *", "i *").format(k=k) for k in range(1, 5)}
    return {
        "available": f"({p[2]} - {p[2]} / 2) + {p[3]} + CASE WHEN i %% 2 = 1 THEN {p[4]} ELSE 0 END",
        "pending": f"CASE WHEN i %% 2 = 0 THEN {p[4]} ELSE 0 END",
        "lifetime_earned": f"{p[1]} + {p[2]} + {p[3]} + {p[4]}",
        "redeemed": f"{p[1]} + {p[2]} / 2",
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


def run_command(chunk: int) -> tuple[float, int, str]:
    root = Path(__file__).resolve().parent.parent
    with C.Timer() as t:
        proc = subprocess.run(
            [sys.executable, str(root / "manage.py"), "verify_ledger", "--chunk", str(chunk)],
            capture_output=True,
            text=True,
            env={**os.environ},
            cwd=root,
        )
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return t.seconds, proc.returncode, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=200_000, help=f"{PER_MEMBER} entries per member")
    parser.add_argument("--chunk", type=int, default=200_000, help="member ids per checking query (the default)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each (best and all are printed)")
    parser.add_argument("--tamper", action="store_true", help="also check that a +1 on one balance is reported")
    parser.add_argument(
        "--chunk-sweep", default="", help="comma list of other chunk sizes to time, e.g. 50000,10000 (diagnostic)"
    )
    C.add_common_args(parser)
    args = parser.parse_args()

    C.setup_django(force_db=args.force_db)
    C.print_header(f"verify_ledger: {args.members:,} members x {PER_MEMBER} entries")
    program = C.bench_program("bench-verify", expiry_days=365, pending_days=0)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    seconds = load(program.id, args.members, now)
    counts = C.db_counts()
    print(
        f"loaded {counts['entries']:,} entries, {counts['allocations']:,} allocations, {counts['members']:,} members "
        f"in {seconds:.1f} s (incl. VACUUM ANALYZE, CHECKPOINT)",
        flush=True,
    )

    from loyalty.selectors import ledger_problems

    inproc, command = [], []
    for r in range(args.repeat):
        with C.Timer() as t:
            problems = sum(1 for _ in ledger_problems(chunk=args.chunk))
        inproc.append(t.seconds)
        print(f"run {r + 1}: ledger_problems(): {problems} problems in {t.seconds:.2f} s   [{C.load_snapshot()}]")
        if problems:
            raise SystemExit("the generated ledger does not verify: fix the generator")
        secs, rc, last = run_command(args.chunk)
        command.append(secs)
        print(f"run {r + 1}: manage.py verify_ledger: exit {rc} in {secs:.2f} s ({last})", flush=True)
        if rc != 0:
            raise SystemExit("verify_ledger failed on a consistent ledger")

    sweep = []
    for chunk in [int(x) for x in args.chunk_sweep.split(",") if x.strip()]:
        with C.Timer() as t:
            problems = sum(1 for _ in ledger_problems(chunk=chunk))
        ranges = -(-args.members // chunk)
        sweep.append((chunk, ranges, f"{t.seconds:.2f}", problems))
    if sweep:
        print("ledger_problems(chunk=N) on the same data (each member-id range re-reads what it joins):")
        C.print_table(["chunk", "ranges", "seconds", "problems"], sweep)

    if args.tamper:
        C.execute("UPDATE loyalty_member SET available = available + 1 WHERE id = %s", [args.members // 2])
        found = [str(p) for p in ledger_problems(chunk=args.chunk)]
        C.execute("UPDATE loyalty_member SET available = available - 1 WHERE id = %s", [args.members // 2])
        print(f"tamper check (+1 on member {args.members // 2}): {found}")
        if len(found) != 1 or f"member {args.members // 2}:" not in found[0]:
            raise SystemExit("verify did not report exactly the tampered member")
    print()

    best = min(command)
    print(f"RESULT (c) verify_ledger over {counts['entries']:,} entries ({counts['allocations']:,} allocations):")
    C.print_table(
        ["path", "best s", "runs"],
        [
            ("ledger_problems() in-process", f"{min(inproc):.2f}", " / ".join(f"{x:.2f}" for x in inproc)),
            ("manage.py verify_ledger (incl. startup)", f"{best:.2f}", " / ".join(f"{x:.2f}" for x in command)),
        ],
    )
    if counts["entries"] >= 1_000_000:
        verdict = C.verdict(best < TARGET_SECONDS)
    else:
        verdict = "not judged (fewer entries than the target's 1,000,000)"
    print(
        f"verify_ledger: {best:.2f} s for {counts['entries']:,} entries; "
        f"target < {TARGET_SECONDS:g} s for 1,000,000 entries: {verdict}"
    )


if __name__ == "__main__":
    main()
