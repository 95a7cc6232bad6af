"""`make run` (config/devrun.py) on the embedded default: web, a real Celery worker and beat
with the broker in files (no Redis, not eager), stopped all together by SIGTERM / Ctrl-C.

The supervisor runs as `make run` runs it, pointed at the test database (committed rows:
`transaction=True`) with its queue, cache and logs in a temporary folder; `--no-demo` skips the
demo data (its login file is tested on its own below).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from loyalty.models import LedgerJobRun
from tests.integration import processes

pytestmark = pytest.mark.slow

AS_OF = dt.datetime(2031, 5, 4, 3, 2, 1, tzinfo=dt.UTC)  # marks the run of the task sent by hand


def _alive(pids: list[int]) -> list[str]:
    """The processes among `pids` still running (not zombies), described."""
    alive = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(proc.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture
def devrun(transactional_db, tmp_path):
    """Start `python -m config.devrun --no-demo`; yields (process, output file, log dir, port)."""
    port = processes.free_port()
    env = processes.base_env(tmp_path)
    output = tmp_path / "devrun.out"
    argv = [sys.executable, "-m", "config.devrun", "--no-demo", "--port", str(port), "--worker-concurrency", "1"]
    proc = processes.start(argv, env, output)
    try:
        yield proc, output, tmp_path / "logs", port, env
    finally:
        processes.stop(proc, timeout=120)


def _wait_running(proc: subprocess.Popen, output: Path, logs: Path) -> None:
    processes.wait_for(
        "make run's three processes",
        lambda: "Ctrl-C stops all three" in processes.tail(output),
        procs=[proc],
        logs=[output, logs / "web.log", logs / "worker.log", logs / "beat.log"],
    )


def test_make_run_serves_runs_tasks_on_a_worker_dispatches_schedules_and_stops_all_on_sigterm(devrun):
    proc, output, logs, port, env = devrun
    interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="test: release every second", task="loyalty.release_pending_points", interval=interval
    )
    all_logs = [output, logs / "web.log", logs / "worker.log", logs / "beat.log"]

    _wait_running(proc, output, logs)
    assert processes.answers(f"http://127.0.0.1:{port}/health")
    printed = processes.tail(output)
    for name in ("web.log", "worker.log", "beat.log"):
        assert str(logs / name) in printed or f"logs/{name}" in printed
    family = [p.pid for p in processes.family(proc)]
    assert len(family) >= 4, family  # the supervisor, web, worker (and its pool), beat

    # A task sent from another process (as the web process does) goes through the broker's
    # files to the worker: not run eagerly by the sender.
    send = subprocess.run(
        [
            *processes.manage("shell", "-c"),
            "from loyalty.tasks import expire_points_task; "
            f"r = expire_points_task.delay(now={AS_OF.isoformat()!r}); print('sent', r.id)",
        ],
        cwd=processes.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert send.returncode == 0, send.stdout + send.stderr
    assert "sent" in send.stdout
    processes.wait_for(
        "the worker runs the task sent",
        lambda: LedgerJobRun.objects.filter(job="expire_points", as_of=AS_OF).exists(),
        procs=[proc],
        logs=all_logs,
    )
    assert "expire_points" in processes.tail(logs / "worker.log", 100_000)

    # Beat dispatches the schedule (every second) again and again; the worker runs it.
    processes.wait_for(
        "beat dispatches the schedule and the worker runs it",
        lambda: LedgerJobRun.objects.filter(job="release_pending_points").count() >= 2,
        procs=[proc],
        logs=all_logs,
    )
    assert "test: release every second" in processes.tail(logs / "beat.log", 100_000)

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 0, processes.tail(output)
    assert "Stopped." in processes.tail(output)
    assert _alive(family) == []


def test_ctrl_c_stops_make_runs_processes(devrun):
    proc, output, logs, _, _ = devrun
    _wait_running(proc, output, logs)
    family = [p.pid for p in processes.family(proc)]

    proc.send_signal(signal.SIGINT)  # what the terminal sends to the foreground group on Ctrl-C

    assert proc.wait(timeout=300) == 0, processes.tail(output)
    assert _alive(family) == []


def test_the_processes_stop_when_the_supervisor_is_killed(devrun):
    """SIGKILL leaves no time to clean up: each child gets SIGTERM from the kernel (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    proc, output, logs, _, _ = devrun
    _wait_running(proc, output, logs)
    family = [p.pid for p in processes.family(proc)]

    proc.kill()
    proc.wait()

    deadline = time.monotonic() + processes.STARTUP_SECONDS  # a worker's warm shutdown, on a busy machine
    while _alive(family) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _alive(family) == []


def test_load_demo_hands_the_login_over_in_a_private_file_instead_of_printing_it(db, tmp_path):
    login_file = tmp_path / "login.json"
    out = io.StringIO()

    call_command("load_demo", members=3, login_file=str(login_file), stdout=out)

    login = json.loads(login_file.read_text())
    assert login["username"] == "demo"
    assert login["password"]
    assert login_file.stat().st_mode & 0o777 == 0o600
    assert "Staff login" not in out.getvalue()
    assert login["password"] not in out.getvalue()
