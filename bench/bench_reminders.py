"""Member emails (issue 11): the periodic statement job, outbox delivery, and the email work
added to `POST /api/v1/activities`.

(a) `send_point_reminders` (`notifications.email_schedules.point_reminders_send`, chunked, one
    transaction per chunk, the new ids published to the broker after each commit, 100 per
    task) over `--members` members with a balance and consent, against ONE hand-written
    `INSERT ... SELECT` of the same message rows into a same-shaped table
    (`CREATE TABLE ... (LIKE notifications_emailmessage INCLUDING ALL)`), in the same run.
    Target: the job <= 3x the statement's time. Then the job again as of the same moment (the
    period is recorded: skipped), and once more with the record deleted (every row conflicts:
    nothing new).
(b) Outbox delivery: `--deliver` queued messages sent by ONE real Celery worker (`--pool
    solo`, started here, Redis broker at `--broker`) through anymail's test backend: messages/s
    from publishing the send tasks until every row is `sent`.
(c) The email work added to `POST /api/v1/activities`: `--requests` requests in this process
    (Django test client, the program of bench_activities.py), points_earned on and off in
    alternating blocks; CPU per request of this process (Python, psycopg, the broker publish)
    and of its PostgreSQL backend (/proc). Target: the difference <= 1 ms per request.

The data: members generated in SQL with a cached balance and no ledger entries (the job reads
`available` only; no verify_ledger here). The database's loyalty and email tables are
TRUNCATEd: use a database whose name contains "bench".

    BENCH_BROKER_URL is set from --broker (default redis://127.0.0.1:6379/7)
    .venv/bin/python bench/bench_reminders.py [--members 1000000] [--deliver 5000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

TARGET_FACTOR = 3.0
TARGET_CPU_MS = 1.0
COPY = "bench_emailmessage_copy"

HAND_SQL = f"""
INSERT INTO {COPY} (program_id, member_id, kind, source, data, status, attempts, next_attempt_at,
                    to_email, subject, language, esp_message_id, last_error, created_at)
SELECT m.program_id, m.id, 'points_reminder', %(period)s, %(data)s::jsonb, 'queued', 0, %(now)s,
       '', '', '', '', '', %(now)s
FROM loyalty_member m
WHERE m.program_id = %(program)s AND m.available > 0 AND m.email <> '' AND m.status = 'active' AND m.email_consent
ON CONFLICT (program_id, member_id, kind, source) WHERE member_id IS NOT NULL DO NOTHING
"""


def broker_purge() -> None:
    from config.celery_app import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def load_members(members: int, program_id: int) -> float:
    with C.Timer() as t:
        C.reset_ledger()
        C.execute("TRUNCATE notifications_emailmessage, notifications_emailschedulerun RESTART IDENTITY")
        C.insert_members(program_id, members, {"available": "1 + (i * 37) %% 900", "lifetime_earned": "1000"})
        # Every member consents (the job's filter is then as wide as it gets).
        C.execute("UPDATE loyalty_member SET email_consent = true")
        C.execute(f"DROP TABLE IF EXISTS {COPY}")
        C.execute(f"CREATE TABLE {COPY} (LIKE notifications_emailmessage INCLUDING ALL)")
        C.settle_database(["loyalty_member", "notifications_emailmessage", COPY])
    return t.seconds


def run_hand(now: dt.datetime, program_id: int) -> tuple[float, int]:
    from django.db import connection, transaction

    with C.Timer() as t, transaction.atomic(), connection.cursor() as cur:
        cur.execute(HAND_SQL, {"period": "2026-12", "data": '{"period": "2026-12"}', "now": now, "program": program_id})
        rows = cur.rowcount
    return t.seconds, rows


def run_job(now: dt.datetime, chunk: int, breakdown: dict[str, float] | None = None):
    from django.db import connection

    from notifications import email_schedules, tasks

    spent = {"insert": 0.0, "ranges": 0.0, "other": 0.0, "publish": 0.0}
    original = tasks.send_emails_task.delay

    def timed_delay(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent["publish"] += time.perf_counter() - t0

    def wrapper(execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            step = (
                "insert"
                if "INSERT INTO notifications_emailmessage" in sql
                else "ranges"
                if sql.startswith("SELECT id FROM loyalty_member") or sql.startswith("SELECT min(id), max(id)")
                else "other"
            )
            spent[step] += time.perf_counter() - t0

    tasks.send_emails_task.delay = timed_delay
    try:
        with connection.execute_wrapper(wrapper), C.Timer() as t:
            result = email_schedules.point_reminders_send(now=now, chunk_size=chunk)
    finally:
        tasks.send_emails_task.delay = original
    if breakdown is not None:
        breakdown.update(spent)
    return t.seconds, result


# --------------------------------------------------------------------------------------------
# (b) delivery through one real worker


def start_worker(env: dict[str, str], log_path: str) -> subprocess.Popen:
    cmd = [
        str(C.ROOT / ".venv/bin/celery"),
        "-A",
        "config.celery_app",
        "worker",
        "--pool",
        "solo",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, cwd=C.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def deliver(count: int, broker: str) -> tuple[float, int, str]:
    """Publish send tasks (100 ids each, as the job does) for the `count` oldest queued
    messages, with one worker already consuming; seconds until they are all sent."""
    from notifications.emails import SEND_BATCH
    from notifications.models import EmailMessage
    from notifications.tasks import send_emails_task

    broker_purge()
    ids = list(EmailMessage.objects.filter(status="queued").order_by("id").values_list("id", flat=True)[:count])
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "_bench_email_settings",
            "BENCH_BROKER_URL": broker,
            "PYTHONPATH": f"{C.ROOT}{os.pathsep}{C.ROOT / 'bench'}",
        }
    )
    with tempfile.NamedTemporaryFile(prefix="bench_reminders_worker_", suffix=".log", delete=False) as log_file:
        log_path = log_file.name
    worker = start_worker(env, log_path)
    try:
        # Warm the worker (imports, first connection, the layout's compilation) on one message.
        send_emails_task.delay(ids[:1])
        deadline = time.monotonic() + 120
        while EmailMessage.objects.filter(pk=ids[0], status="sent").count() == 0:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not send the warm-up message; see {log_path}")
            time.sleep(0.2)
        rest = ids[1:]
        t0 = time.perf_counter()
        for start in range(0, len(rest), SEND_BATCH):
            send_emails_task.delay(rest[start : start + SEND_BATCH])
        deadline = time.monotonic() + 3600
        while True:
            done = EmailMessage.objects.filter(pk__in=rest).exclude(status="queued").count()
            if done >= len(rest):
                break
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker stopped or took too long ({done} of {len(rest)}); see {log_path}")
            time.sleep(0.25)
        seconds = time.perf_counter() - t0
        sent = EmailMessage.objects.filter(pk__in=rest, status="sent").count()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return seconds, sent, log_path


# --------------------------------------------------------------------------------------------
# (c) CPU per request of POST /api/v1/activities, points_earned on / off


def cpu_per_request(members: int, requests: int, block: int) -> dict[str, dict[str, float]]:
    import bench_activities as A
    import bench_earn
    from django.db import connection
    from django.test import Client

    from notifications import emails
    from notifications.email_kinds import default_enabled_kinds
    from notifications.models import EmailMessage, EmailSettings

    program, _rules, key = A.setup_program(members, tiers=True)
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}")
    rng = random.Random("bench-reminders-cpu")
    on_kinds = default_enabled_kinds()
    off_kinds = [k for k in on_kinds if k != "points_earned"]

    def switch(on: bool) -> None:
        EmailSettings.objects.update_or_create(
            program=program, defaults={"enabled_kinds": on_kinds if on else off_kinds}
        )
        emails.settings_forget()

    counter = iter(range(10**9))

    def post() -> int:
        i = next(counter)
        body = A.purchase(rng, members, f"cpu-{i}")
        resp = client.post(A.PATH, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"cpu-{i}")
        return resp.status_code

    for on in (True, False):  # warm both paths
        switch(on)
        for _ in range(30):
            post()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    totals = {label: {"n": 0, "client": 0.0, "server": 0.0, "wall": 0.0, "bad": 0} for label in ("on", "off")}
    done = 0
    blocks = 0
    while done < requests * 2:
        on = blocks % 2 == 0
        label = "on" if on else "off"
        switch(on)
        c0, s0, w0 = time.process_time(), bench_earn.proc_cpu_seconds(backend), time.perf_counter()
        bad = sum(post() != 201 for _ in range(block))
        c1, s1, w1 = time.process_time(), bench_earn.proc_cpu_seconds(backend), time.perf_counter()
        row = totals[label]
        row["n"] += block
        row["client"] += c1 - c0
        row["server"] += s1 - s0
        row["wall"] += w1 - w0
        row["bad"] += bad
        done += block
        blocks += 1
    totals["messages"] = {"n": EmailMessage.objects.filter(kind="points_earned").count()}
    return totals


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=None, help="the job's chunk_size (default: its own)")
    parser.add_argument("--deliver", type=int, default=5000, help="messages delivered by the worker (0: skip)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per side in (c) (0: skip)")
    parser.add_argument("--block", type=int, default=100, help="requests per on/off block in (c)")
    parser.add_argument("--cpu-members", type=int, default=10_000, help="members of the activities program in (c)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--parts", default="job,deliver,cpu")
    C.add_common_args(parser)
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    os.environ["BENCH_BROKER_URL"] = args.broker
    os.environ["DJANGO_SETTINGS_MODULE"] = "_bench_email_settings"
    os.environ["API_RATE_LIMIT"] = "100000000/min"
    C.setup_django(force_db=args.force_db)
    from notifications import email_schedules
    from notifications.models import EmailSettings

    chunk = args.chunk or email_schedules.CHUNK_SIZE
    C.print_header(
        f"member emails: send_point_reminders over {args.members:,} members (chunk {chunk}), delivery of "
        f"{args.deliver:,} through one worker, POST /activities CPU with points_earned on/off"
    )
    print(f"broker: {args.broker}; email backend in the worker: anymail.backends.test.EmailBackend")
    now = dt.datetime(2026, 12, 1, 8, 10, tzinfo=dt.UTC)
    results: list[tuple[str, ...]] = []
    factor = None

    if parts & {"job", "deliver"}:
        program = C.bench_program("bench-reminders", name="Bench reminders")
        EmailSettings.objects.update_or_create(program=program, defaults={"reminder_frequency": "monthly"})
        seconds = load_members(args.members, program.id)
        print(f"loaded {args.members:,} members in {seconds:.1f} s   [{C.load_snapshot()}]", flush=True)
        broker_purge()
        # The statement before and after the job (each from an empty copy, after a CHECKPOINT):
        # the job is compared with their mean, so that a change of load during the run weighs
        # on both sides.
        C.settle_database(["loyalty_member", COPY])
        hand_first, hand_rows = run_hand(now, program.id)
        print(
            f"[sql] one INSERT ... SELECT: {hand_first:.2f} s, {hand_rows:,} rows   [{C.load_snapshot()}]", flush=True
        )
        C.settle_database(["loyalty_member", "notifications_emailmessage"])
        breakdown: dict[str, float] = {}
        job_seconds, job = run_job(now, chunk, breakdown)
        C.execute(f"TRUNCATE {COPY}")
        C.settle_database(["loyalty_member", COPY])
        hand_second, _rows = run_hand(now, program.id)
        print(f"[sql] again after the job: {hand_second:.2f} s   [{C.load_snapshot()}]", flush=True)
        hand = (hand_first + hand_second) / 2
        print(
            f"[job] point_reminders_send: {job_seconds:.2f} s, {job.queued:,} rows, {job.chunks} chunks "
            f"(INSERT statements {breakdown['insert']:.2f} s, member ranges {breakdown['ranges']:.2f} s, "
            f"other statements {breakdown['other']:.2f} s, publishing the send tasks {breakdown['publish']:.2f} s)"
            f"   [{C.load_snapshot()}]",
            flush=True,
        )
        again_seconds, again = run_job(now, chunk)
        C.execute("DELETE FROM notifications_emailschedulerun")
        forced_seconds, forced = run_job(now, chunk)
        print(
            f"[job] again: {again.queued} rows in {again_seconds:.2f} s (period recorded: skipped); "
            f"record deleted: {forced.queued} rows in {forced_seconds:.2f} s",
            flush=True,
        )
        factor = job_seconds / hand
        results += [
            (
                f"hand-written INSERT ... SELECT (1 statement; mean of {hand_first:.2f} and {hand_second:.2f})",
                f"{hand:.2f}",
                f"{hand_rows / hand:,.0f}",
                f"{hand_rows:,}",
            ),
            (
                f"send_point_reminders (chunk {chunk}, tasks published)",
                f"{job_seconds:.2f}",
                f"{job.queued / job_seconds:,.0f}",
                f"{job.queued:,}",
            ),
            ("  of which the INSERT statements", f"{breakdown['insert']:.2f}", "", ""),
            ("  of which member_id_ranges", f"{breakdown['ranges']:.2f}", "", ""),
            ("  of which other statements", f"{breakdown['other']:.2f}", "", ""),
            ("  of which publishing send tasks (Redis)", f"{breakdown['publish']:.2f}", "", ""),
            (
                "  of which commits + Python (rest)",
                f"{job_seconds - sum(breakdown.values()):.2f}",
                "",
                "",
            ),
            ("second run (period recorded)", f"{again_seconds:.2f}", "", f"{again.queued}"),
            ("second run, record deleted (all conflict)", f"{forced_seconds:.2f}", "", f"{forced.queued}"),
        ]

    delivery = None
    if "deliver" in parts and args.deliver:
        seconds, sent, log_path = deliver(args.deliver, args.broker)
        delivery = (args.deliver - 1, seconds, sent)
        print(f"[deliver] {sent:,} of {args.deliver - 1:,} sent in {seconds:.2f} s (worker log {log_path})", flush=True)
        broker_purge()

    cpu = None
    if "cpu" in parts and args.requests:
        cpu = cpu_per_request(args.cpu_members, args.requests, args.block)
        broker_purge()

    print()
    if results:
        print(f"RESULT (a) points_reminder rows for {args.members:,} members with a balance:")
        C.print_table(["path", "seconds", "rows/s", "rows"], results)
        print(f"ratio job/sql = {factor:.2f}x  target <= {TARGET_FACTOR:g}x: {C.verdict(factor <= TARGET_FACTOR)}")
        print()
    if delivery:
        count, seconds, sent = delivery
        print("RESULT (b) outbox delivery, one Celery worker (solo pool), anymail test backend:")
        C.print_table(
            ["messages", "sent", "seconds", "messages/s"],
            [(f"{count:,}", f"{sent:,}", f"{seconds:.2f}", f"{sent / seconds:,.1f}")],
        )
    if cpu:
        print(f"RESULT (c) POST /api/v1/activities, {args.requests} requests per side in blocks of {args.block}:")
        rows = []
        per = {}
        for label in ("on", "off"):
            r = cpu[label]
            per[label] = (
                (r["client"] + r["server"]) / r["n"] * 1000,
                r["client"] / r["n"] * 1000,
                r["server"] / r["n"] * 1000,
            )
            rows.append(
                (
                    f"points_earned {label}",
                    f"{r['n']}",
                    f"{r['bad']}",
                    f"{r['wall'] / r['n'] * 1000:.2f}",
                    f"{per[label][1]:.2f}",
                    f"{per[label][2]:.2f}",
                    f"{per[label][0]:.2f}",
                )
            )
        C.print_table(
            ["emails", "requests", "non-201", "wall ms", "CPU ms (this process)", "CPU ms (backend)", "CPU ms total"],
            rows,
        )
        extra = per["on"][0] - per["off"][0]
        print(f"points_earned messages written: {cpu['messages']['n']:,}")
        print(
            f"email work per request = {extra:.2f} ms CPU  "
            f"target <= {TARGET_CPU_MS:g} ms: {C.verdict(extra <= TARGET_CPU_MS)}"
        )
    print(f"end: [{C.load_snapshot()}]")


if __name__ == "__main__":
    main()
