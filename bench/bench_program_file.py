"""Program files (issue 14, docs/program-files.md): `export_program` and `load_program` of a
program with 100 earning rules, 10 tiers, 200 rewards and 30 email templates (plus the five
built-in rules, 3 automations, 2 webhook endpoints). Target: under 2 s each.

Measured in-process (no interpreter start-up, which `manage.py` adds on top):
- export: `export_document` + YAML text;
- load into a new program (every object created);
- load of the same file again (nothing to change: the idempotent path);
- load of a file where every rule's multiplier and every reward's cost changed (305 updates);
- the dry run of that file (the same work, rolled back).
Each is run `--repeat` times; the table shows the median and the best. The program is built
through the ORM under a fresh slug each run (nothing is truncated; the database name must
contain "bench").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench .venv/bin/python bench/bench_program_file.py
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TARGET_SECONDS = 2.0


def build(slug: str):
    from django.conf import settings

    from loyalty.services import program_create
    from notifications import email_kinds, emails
    from notifications.services import endpoint_create
    from rewards.models import Reward
    from tiers.models import Tier
    from workflows import builtins
    from workflows.models import Automation, EarningRule

    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True  # the bench resolves no host names
    program = program_create(name=f"Bench {slug}", slug=slug, timezone="Europe/Paris", expiry_days=365)
    builtins.builtin_rules_install(program=program)
    tiers = [
        Tier.objects.create(
            program=program, name=f"Level {n:02d}", position=n, threshold=n * 500, multiplier=1 + n / 10
        )
        for n in range(1, 11)
    ]
    for n in range(100):
        rule = EarningRule.objects.create(
            program=program,
            name=f"Campaign {n:03d}",
            trigger="purchase",
            kind=("per_amount", "fixed", "per_category")[n % 3],
            points=None if n % 3 == 0 else Decimal(10 + n),
            include_categories=["coffee", "tea"] if n % 3 == 2 else [],
            multiplier=Decimal(1 + n % 3),
            min_amount=Decimal(n % 50),
            days_of_week=[5, 6] if n % 2 else [],
            starts_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) if n % 4 == 0 else None,
            ends_at=dt.datetime(2027, 1, 1, tzinfo=dt.UTC) if n % 4 == 0 else None,
            cap_per_day=1000 if n % 5 == 0 else None,
            priority=n,
        )
        rule.tiers.set(tiers[n % 10 :: 3])
    for n in range(200):
        Reward.objects.create(
            program=program,
            name=f"Reward {n:03d}",
            description="A reward of the bench.",
            kind="amount_off",
            value=Decimal(5 + n % 20),
            cost_points=100 + n * 10,
            min_tier=tiers[n % 10] if n % 7 == 0 else None,
            position=n,
        )
    kinds = [k for k in email_kinds.KINDS if k != "custom"]
    for index in range(30):
        kind, language = kinds[index % len(kinds)], ("en", "fr")[index // len(kinds)]
        emails.email_template_save(
            program=program,
            kind=kind,
            language=language,
            subject=f"{{{{ program.name }}}} news {index}",
            html_body=f"<p>Hello {{{{ member.first_name }}}}, message {index}.</p>",
            text_body=f"Hello {{{{ member.first_name }}}}, message {index}.",
        )
    for n in range(3):
        Automation.objects.create(
            program=program, name=f"Automation {n}", trigger="daily", period="year", award_points=50 * (n + 1)
        )
    for n in range(2):
        endpoint_create(program=program, url=f"https://hooks{n}.bench.example/loyalty", events=["points.earned"])
    return program


CPU: dict[str, list[float]] = {}
QUERIES: dict[str, list[int]] = {}


def timed(function, name: str = "") -> tuple[float, object]:
    """Wall seconds of `function()`; its CPU seconds (this process) and statements go to CPU/QUERIES."""
    from django.db import connection

    count = [0]

    def counter(execute, sql, params, many, context):
        count[0] += 1
        return execute(sql, params, many, context)

    cpu, started = time.process_time(), time.perf_counter()
    with connection.execute_wrapper(counter):
        result = function()
    wall = time.perf_counter() - started
    if name:
        CPU.setdefault(name, []).append(time.process_time() - cpu)
        QUERIES.setdefault(name, []).append(count[0])
    return wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    C.add_common_args(parser)
    args = parser.parse_args()
    C.setup_django(force_db=args.force_db)
    from django.conf import settings

    from programfiles.export import dumps, export_document, loads
    from programfiles.loading import load_document

    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    C.print_header("Program files: export_program / load_program")
    stamp = dt.datetime.now().strftime("%H%M%S")
    program = build(f"pf-{stamp}")
    text = dumps(export_document(program))
    document = loads(text)
    print(
        f"program: {len(document['earning_rules'])} earning rules, {len(document['tiers'])} tiers, "
        f"{len(document['rewards'])} rewards, {len(document['email_templates'])} email templates, "
        f"{len(document['automations'])} automations, {len(document['webhook_endpoints'])} webhook endpoints; "
        f"file {len(text.encode()) / 1024:.0f} KiB, {text.count(chr(10))} lines\n"
    )
    changed = copy.deepcopy(document)
    for rule in changed["earning_rules"]:
        rule["multiplier"] = rule["multiplier"] + 1
    for reward in changed["rewards"]:
        reward["cost_points"] = reward["cost_points"] + 5

    runs: dict[str, list[float]] = {
        name: [] for name in ("export", "load new", "load again", "dry run", "load changed")
    }
    for n in range(args.repeat):
        runs["export"].append(timed(lambda: dumps(export_document(program)), "export")[0])
        seconds, result = timed(
            lambda n=n: load_document(copy.deepcopy(document), slug=f"pf-{stamp}-copy{n}"), "load new"
        )
        runs["load new"].append(seconds)
        assert dumps(export_document(result.program)) == text.replace(
            f"slug: pf-{stamp}\n", f"slug: pf-{stamp}-copy{n}\n"
        )
        seconds, again = timed(
            lambda n=n: load_document(copy.deepcopy(document), slug=f"pf-{stamp}-copy{n}"), "load again"
        )
        assert again.changes == [], again.changes[:3]
        runs["load again"].append(seconds)
        runs["dry run"].append(
            timed(
                lambda n=n: load_document(copy.deepcopy(changed), slug=f"pf-{stamp}-copy{n}", dry_run=True), "dry run"
            )[0]
        )
        seconds, done = timed(
            lambda n=n: load_document(copy.deepcopy(changed), slug=f"pf-{stamp}-copy{n}"), "load changed"
        )
        assert len(done.changes) == len(changed["earning_rules"]) + len(changed["rewards"]), len(done.changes)
        runs["load changed"].append(seconds)

    rows = [
        (
            name,
            f"{statistics.median(values):.3f}",
            f"{min(values):.3f}",
            f"{statistics.median(CPU[name]):.3f}",
            QUERIES[name][-1],
            C.verdict(statistics.median(values) < TARGET_SECONDS),
        )
        for name, values in runs.items()
    ]
    C.print_table(("step", "median s", "best s", "CPU s (median)", "statements", f"< {TARGET_SECONDS:.0f} s"), rows)
    print(f"load: {C.load_snapshot()}")


if __name__ == "__main__":
    main()
