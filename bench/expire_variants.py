"""Experiments behind the suggestions in docs/performance.md for `points_expire` (not a target
benchmark). Each variant runs on a freshly generated identical copy of bench_expire.py's data and
must leave a ledger that verifies; times are compared with the one hand-written statement.

Variants (the chunk loop is a copy of `loyalty.services.jobs._run_chunks`; only the SQL changes):
  service        loyalty.services.points_expire as it is (chunk_size=--chunk)
  nolotlock      the pre-919ad2f service (pick `chunk` due lots by expiry, expire exactly
                 those) without `FOR UPDATE` on the lots in `_expire_lots_sql` (the member row
                 locks taken just before already serialise every writer of those lots)
  bymember       pick the members owning the next `chunk` due lots by expiry, then expire ALL
                 their due lots (index entry_open_lots): what the service does since 919ad2f
  bymember_nolotlock   the same without `FOR UPDATE` on the lots
  member_keyset  pick the next members (member id > the last one done) that have due lots,
                 through the existing index entry_open_lots (member_id, expires_at) WHERE
                 remaining > 0, and expire all their due lots: index entries of lots expired
                 earlier in the run are never read again; one expire entry per member
  member_keyset_nolotlock  the same without `FOR UPDATE` on the lots
  sql            the one hand-written statement (bench_expire.HAND_SQL)

    .venv/bin/python bench/expire_variants.py [--members 25000] [--chunk N] [--hold-xid]
        [--variants service,member_keyset,member_keyset_nolotlock,sql] [--repeat N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import bench_expire as B

PICK_LOTS = (
    "SELECT id, member_id FROM loyalty_ledgerentry WHERE remaining > 0 AND expires_at IS NOT NULL "
    "AND expires_at <= %(now)s ORDER BY expires_at LIMIT %(n)s"
)
PICK_MEMBERS_AFTER = (
    "SELECT member_id, id FROM loyalty_ledgerentry WHERE remaining > 0 AND expires_at IS NOT NULL "
    "AND expires_at <= %(now)s AND member_id > %(after)s ORDER BY member_id LIMIT %(n)s"
)
LOCK = "SELECT id FROM loyalty_member WHERE id = ANY(%s) ORDER BY id FOR UPDATE"


def apply_sql(*, by_member: bool, lock_lots: bool) -> str:
    sql = B.HAND_SQL
    where = "WHERE remaining > 0 AND expires_at IS NOT NULL AND expires_at <= %(now)s"
    if by_member:
        new_where = "WHERE member_id = ANY(%(members)s) AND remaining > 0 AND expires_at <= %(now)s"
    else:
        new_where = "WHERE id = ANY(%(ids)s) AND remaining > 0 AND expires_at <= %(now)s"
    sql = sql.replace(where, new_where + ("\n    FOR UPDATE" if lock_lots else ""))
    assert new_where in sql
    return sql


def run_chunks(
    now: dt.datetime, chunk: int, *, by_member: bool, lock_lots: bool, keyset: bool = False
) -> tuple[float, int]:
    from django.db import connection, transaction

    sql = apply_sql(by_member=by_member, lock_lots=lock_lots)
    chunks = 0
    after = 0
    started = time.perf_counter()
    while True:
        with transaction.atomic(durable=True), connection.cursor() as cur:
            if keyset:
                cur.execute(PICK_MEMBERS_AFTER, {"now": now, "n": chunk, "after": after})
                picked = [(r[1], r[0]) for r in cur.fetchall()]
                if not picked and after:
                    after = 0  # one more pass from the start catches lots that became due meanwhile
                    continue
            else:
                cur.execute(PICK_LOTS, {"now": now, "n": chunk})
                picked = cur.fetchall()
            if not picked:
                break
            members = sorted({r[1] for r in picked})
            after = members[-1]
            cur.execute(LOCK, [members])
            cur.execute(sql, {"ids": [r[0] for r in picked], "members": members, "now": now})
            chunks += 1
    return time.perf_counter() - started, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=25_000)
    parser.add_argument("--lots", type=int, default=4)
    parser.add_argument("--live-lots", type=int, default=0, help="unexpired lots per member")
    parser.add_argument("--spread-days", type=int, default=90)
    parser.add_argument("--chunk", type=int, default=None, help="lots picked per chunk (default: the service's)")
    parser.add_argument("--variants", default="service,member_keyset,member_keyset_nolotlock,sql")
    parser.add_argument("--repeat", type=int, default=1, help="run the whole list this many times (interleaved)")
    parser.add_argument("--hold-xid", action="store_true", help="keep an xid open in another database (bench_expire)")
    C.add_common_args(parser)
    args = parser.parse_args()
    C.setup_django(force_db=args.force_db)
    if args.chunk is None:
        import inspect

        from loyalty.services import points_expire

        args.chunk = inspect.signature(points_expire).parameters["chunk_size"].default
    C.print_header(
        f"expire variants: {args.members * args.lots:,} lots ({args.members:,} x {args.lots}"
        f" + {args.live_lots} live lots each), "
        f"spread {args.spread_days} days, chunk {args.chunk}"
        + (", DIAGNOSTIC: an xid held open in another database" if args.hold_xid else "")
    )
    program = C.bench_program("bench-expire", expiry_days=365, pending_days=0)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    results: dict[str, list[tuple[float, int, int]]] = {}
    reference = None
    for _ in range(args.repeat):
        for v in variants:
            B.load(program.id, args.members, args.lots, args.live_lots, now, args.spread_days)
            holder = B.hold_xid() if args.hold_xid else None
            if v == "sql":
                seconds, chunks = B.run_hand_sql(now), 1
            elif v == "service":
                seconds, job = B.run_service(now, args.chunk)
                chunks = job.chunks
            else:
                seconds, chunks = run_chunks(
                    now,
                    args.chunk,
                    by_member=v.startswith(("bymember", "member_keyset")),
                    lock_lots="nolotlock" not in v,
                    keyset=v.startswith("member_keyset"),
                )
            if holder is not None:
                holder.close()
            fp = B.fingerprint()
            problems, _s, first = C.ledger_check()
            if problems:
                raise SystemExit(f"{v}: ledger_problems: {first}")
            same = {k: fp[k] for k in B.COMPARED}
            if reference is None:
                reference = same
            elif same != reference:
                raise SystemExit(f"{v}: different result {same} != {reference}")
            results.setdefault(v, []).append((seconds, chunks, fp["expire_entries"]))
            print(
                f"{v:20s} {seconds:7.2f} s  {chunks:4d} chunks  {fp['expire_entries']:,} expire entries"
                f"   [{C.load_snapshot()}]",
                flush=True,
            )
    print()
    base = min(r[0] for r in results["sql"]) if "sql" in results else None
    rows = []
    for v, rs in results.items():
        best = min(r[0] for r in rs)
        rows.append(
            (
                v,
                f"{best:.2f}",
                " / ".join(f"{r[0]:.2f}" for r in rs),
                rs[0][1],
                f"{rs[0][2]:,}",
                f"{best / base:.2f}x" if base else "-",
            )
        )
    C.print_table(["variant", "best s", "runs", "chunks", "expire entries", "vs sql"], rows)
    print("every variant verified (ledger_problems() == 0) and gave the same balances/allocations")


if __name__ == "__main__":
    main()
