"""In-process CPU per request of the hot API paths, the way gunicorn runs them (issue 10, "Speed").

The HTTP benches (bench_activities.py, bench_redemptions.py) measure gunicorn's CPU per request,
which moves with whatever else the machine runs. This script compares code versions on a busy
machine: it serves `--n` requests of each operation through Django's WSGI handler in this process
(the production settings gunicorn gets from bench_activities.server_env: DEBUG off, the same
middleware and cache), and reports the CPU time of this process per request (time.process_time:
Python, Django and psycopg's client side, not PostgreSQL's), the wall time, the statements and the
time inside execute(). The CPU time is what gunicorn's workers spend minus gunicorn's own HTTP
parsing. `--cprofile` adds a cProfile of the requests (read its shares: it inflates Python time).
The cache (the per-key rate limit's history) is a temporary file cache emptied before each round,
as bench_activities.py does before each HTTP run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench \\
        .venv/bin/python bench/profile_api.py [--ops activity,redeem,redeem_stock,use] [--n 400] [--cprofile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
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
import bench_activities as A
import bench_redemptions as R

OPS = ("activity", "redeem", "redeem_stock", "use")


def make_environ(path: str, body: bytes, key: str, idem: str) -> dict[str, Any]:
    """A WSGI environ like gunicorn's for a JSON POST."""
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Api-Key {key}",
        "HTTP_IDEMPOTENCY_KEY": idem,
        "HTTP_CONNECTION": "keep-alive",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma list of {', '.join(OPS)}")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--fund", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=400, help="measured requests per operation (and per round)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per operation (the median is shown)")
    parser.add_argument("--settings", default="config.settings.production")
    parser.add_argument("--cprofile", type=int, default=0, help="also cProfile this many requests per operation")
    parser.add_argument("--cprofile-lines", type=int, default=40)
    parser.add_argument("--callees", default="", help="with --cprofile: also print the callees of these functions")
    parser.add_argument("--show-sql", action="store_true", help="print the statements of one request per operation")
    C.add_common_args(parser)
    args = parser.parse_args()
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    env = A.server_env(args.settings)
    env["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1,localhost,testserver"
    os.environ.update(env)
    C.setup_django(force_db=args.force_db)
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection

    handler = WSGIHandler()
    C.print_header(f"in-process CPU per request through Django's WSGI handler, settings {args.settings}")
    tag = f"p{int(time.time())}"
    rows = []
    kinds_of: dict[str, Counter] = {}
    profiles = {}
    for op in ops:
        rng = random.Random(f"{tag}-{op}")
        if op == "activity":
            _program, _rules, key = A.setup_program(args.members, tiers=True)
            A.reset_postings(args.members)
            expected, codes, spec = 201, [], {"members": args.members}
        else:
            program, unlimited, stocked, key = R.setup_program(args.members)
            R.reset_state(program.id, args.members, args.fund)
            reward = {"redeem": unlimited, "redeem_stock": stocked, "use": None}[op]
            expected = R.OPS[op][1]
            spec = {"members": args.members, "reward_id": reward.id if reward else None}
            total = 40 + args.n * args.rounds + args.cprofile
            codes = R.issue_coupons(program, unlimited, args.members, total, f"{tag}-{op}") if op == "use" else []
        counter = iter(range(10**9))
        statuses: Counter = Counter()

        def serve(op=op, spec=spec, codes=codes, counter=counter, key=key, rng=rng, statuses=statuses) -> None:
            i = next(counter)
            path, body = R.request_for(op, spec, rng, f"{tag}-{op}-{i}", codes, i)
            environ = make_environ(path, json.dumps(body).encode(), key, f"k-{tag}-{op}-{i}")
            status = []
            out = handler(environ, lambda s, h, exc_info=None: status.append(s))
            b"".join(out)
            if hasattr(out, "close"):
                out.close()
            statuses[int(status[0].split()[0])] += 1

        for _ in range(40):  # warm-up: imports, caches, the connection
            serve()
        if args.show_sql:
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as queries:
                serve()
            print(f"statements of one {op} request:")
            for q in queries.captured_queries:
                print(f"  {q['sql'][:400]}")
        cpu_ms, wall_ms, stmts, exec_ms = [], [], [], []
        log = None
        for _ in range(args.rounds):
            A.clear_server_cache()  # the rate limit's history: each round starts without one
            log = A.StatementKinds()
            with connection.execute_wrapper(log):
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(args.n):
                    serve()
                c1, w1 = time.process_time(), time.perf_counter()
            cpu_ms.append((c1 - c0) / args.n * 1000)
            wall_ms.append((w1 - w0) / args.n * 1000)
            stmts.append(log.count / args.n)
            exec_ms.append(log.seconds / args.n * 1000)
        kinds_of[op] = Counter({k: v / args.n for k, v in log.kinds.items()})
        if statuses.get(expected, 0) != sum(statuses.values()):
            print(f"WARNING: {op}: statuses {dict(statuses)}")
        rows.append(
            (
                op,
                f"{statistics.median(cpu_ms):.2f}",
                " ".join(f"{x:.2f}" for x in cpu_ms),
                f"{statistics.median(wall_ms):.2f}",
                f"{statistics.median(exec_ms):.2f}",
                f"{statistics.median(stmts):.1f}",
                str(dict(statuses)),
            )
        )
        if args.cprofile:
            prof = cProfile.Profile(time.process_time)  # CPU, not wall: waits on PostgreSQL excluded
            prof.enable()
            for _ in range(args.cprofile):
                serve()
            prof.disable()
            profiles[op] = prof
    print(f"{args.n} requests x {args.rounds} rounds per operation  [{C.load_snapshot()}]")
    C.print_table(
        ["operation", "CPU ms/req", "per round", "wall ms/req", "ms in execute()", "statements", "statuses"], rows
    )
    for op, kinds in kinds_of.items():
        print(f"statements per request of {op}:")
        for head, count in kinds.most_common():
            print(f"  {count:5.2f} x  {head}")
    for op, prof in profiles.items():
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf).sort_stats(order)
            stats.print_stats(args.cprofile_lines)
            if order == "cumulative" and args.callees:
                stats.print_callees(args.callees)
            if order == "cumulative":  # the project's own functions
                stats.print_stats(r"/(loyalty|workflows|tiers|notifications|cards|rewards)/(?!migrations)", 70)
            print(f"cProfile of {args.cprofile} {op} requests, by {order}:")
            lines = buf.getvalue().splitlines()
            print("\n".join(x for x in lines if x.strip() and not x.startswith(("   Ordered", "   List"))))
            print()


if __name__ == "__main__":
    main()
