"""Helpers for tests that run the project's own processes (servers, Celery) against the test database.

Such a test is `django_db(transaction=True)`: a subprocess sees only committed rows. Waits poll
with generous limits and never assert on durations: the machine may be busy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.database import database_url

BASE_DIR = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 180.0  # a Django process on a machine shared by several test runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_database_url() -> str:
    """A DATABASE_URL for the database this test runs on (the test database, on the same
    server, the embedded one's socket included: tests/database.py)."""
    return database_url()


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of `make run` (local settings, no broker or cache URL: the embedded
    defaults), pointed at the test database, with its queue, cache and logs under `tmp`."""
    drop = {"CELERY_BROKER_URL", "REDIS_URL", "CACHE_URL", "DJANGO_SECRET_KEY", "EMAIL_BACKEND"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=current_database_url(),
        LOYALTY_CELERY_DIR=str(tmp / "celery"),
        LOYALTY_CACHE_DIR=str(tmp / "cache"),
        LOYALTY_LOG_DIR=str(tmp / "logs"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def wait_for(what: str, ready: Callable[[], bool], *, procs: list[subprocess.Popen], logs: list[Path]) -> None:
    """Poll `ready` until true; fail early if a process exits, or after STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            reason = f"exited with {dead[0].returncode}" if dead else f"not within {STARTUP_SECONDS:.0f} s"
            pytest.fail(f"{what}: {reason}\n" + "\n".join(f"--- {log}\n{tail(log)}" for log in logs))
        time.sleep(0.25)


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (http://127.0.0.1 only)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def answers(url: str) -> bool:
    try:
        return http_get(url)[0] == 200
    except OSError:
        return False


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `argv` in its own session (so that the whole group can be stopped), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def family(proc: subprocess.Popen) -> list[psutil.Process]:
    """The process and all its descendants still alive."""
    try:
        parent = psutil.Process(proc.pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL to the process's whole group; reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]
