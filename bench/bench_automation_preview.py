"""The automation preview before switching on (docs/automations.md, "Before switching on") over
1,000,000 members: `workflows.activation.activation_preview` of a win-back automation (no
activity for 90 days, 200 points, a 5.00 coupon, an email) vs ONE hand-written statement
counting the same members (NOT EXISTS on the member's recent activities). Each member has 2
activities, the latest 0-399 days ago (so about 77 % are lapsed); 1 % were served this period.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/loyalty_bench
    .venv/bin/python bench/bench_automation_preview.py --members 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from decimal import Decimal

from _common import (
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
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    add_common_args(parser)
    args = parser.parse_args()
    setup_django(force_db=args.force_db)

    from django.utils import timezone

    from rewards.models import Reward
    from workflows import activation, automations
    from workflows.models import Automation, AutomationRun

    print_header(f"Automation preview over {args.members:,} members")
    execute("TRUNCATE workflows_automationrun, workflows_automation, rewards_reward RESTART IDENTITY CASCADE")
    reset_ledger()
    program = bench_program(point_value=Decimal("0.01"), currency="EUR")
    program.refresh_from_db()
    insert_members(program.pk, args.members)
    execute("UPDATE loyalty_member SET email_consent = (id % 3 = 0)")
    execute(
        "INSERT INTO loyalty_activity (program_id, member_id, type, occurred_at, reported_at, order_id, currency, "
        "channel, items, data) SELECT %(p)s, i, 'store_visit', "
        "now() - ((i::bigint * 7919) %% 400 + k * 30) * interval '1 day', now(), '', '', '', '[]', '{}' "
        "FROM generate_series(1, %(n)s) AS i, generate_series(0, 1) AS k",
        {"p": program.pk, "n": args.members},
    )
    reward = Reward.objects.create(program=program, name="5 off", kind="amount_off", value="5.00", cost_points=500)
    automation = Automation.objects.create(
        program=program, name="Win-back", period="year", min_days_inactive=90, award_points=200,
        reward_id=reward.pk, email_subject="We miss you", email_body="Come back, {{ member.first_name }}",
    )  # fmt: skip
    now = timezone.now()
    key = automations.period_key(automation=automation, program=program, now=now)
    execute(
        f"INSERT INTO {AutomationRun._meta.db_table} (automation_id, member_id, period_key, fired_at, points, details) "
        "SELECT %s, i, %s, now(), 0, '{}' FROM generate_series(1, %s, 100) AS i",
        [automation.pk, key, args.members],
    )
    settle_database(("loyalty_member", "loyalty_activity", AutomationRun._meta.db_table))

    raw_sql = (
        "SELECT count(*) FROM loyalty_member m WHERE m.program_id = %(p)s AND m.status = 'active' "
        "AND m.enrolled_at <= %(now)s AND m.enrolled_at <= %(since)s "
        "AND NOT EXISTS (SELECT 1 FROM loyalty_activity a WHERE a.member_id = m.id AND a.occurred_at > %(since)s "
        "AND a.occurred_at <= %(now)s) "
        f"AND NOT EXISTS (SELECT 1 FROM {AutomationRun._meta.db_table} r WHERE r.automation_id = %(auto)s "
        "AND r.member_id = m.id AND r.period_key = %(key)s)"
    )
    raw_params = {
        "p": program.pk,
        "now": now,
        "since": now - dt.timedelta(days=90),
        "auto": automation.pk,
        "key": key,
    }
    rows = []
    previews, raws = [], []
    for _ in range(args.repeat):
        started = time.perf_counter()
        preview = activation.activation_preview(automation=automation, now=now)
        previews.append(time.perf_counter() - started)
        started = time.perf_counter()
        raw_count = scalar(raw_sql, raw_params)
        raws.append(time.perf_counter() - started)
        assert raw_count == preview.members, (raw_count, preview.members)
    rows.append(["activation_preview", f"{statistics.median(previews):.2f}", preview.members, preview.points])
    rows.append(["one hand-written count", f"{statistics.median(raws):.2f}", raw_count, "-"])
    print_table(["what", "median s", "members", "points"], rows)
    print(f"ratio preview / statement: {statistics.median(previews) / statistics.median(raws):.2f}")
    print(preview.sentence())


if __name__ == "__main__":
    main()
