"""`make run`'s database path: no DATABASE_URL -> the embedded PostgreSQL (pgserver).

Runs what `make run` runs, as separate processes sharing one embedded server: `migrate`, then
`runserver`, then `python -m config.embedded_pg stop` (what `make stop-db` runs).

The data directory is a fresh `mkdtemp()` directly under the system temp dir rather than
`tmp_path`: as root, pgserver runs PostgreSQL as the OS user `pgserver`, which must traverse every
parent of the data directory; pgserver opens them (g+rx, o+rx), but pytest resets its own
`/tmp/pytest-of-<user>` to 0700 whenever a new session starts, which would lock a server out that
another concurrent pytest run's directory contains.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (http://127.0.0.1 only)
        return response.status, response.read()


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


@pytest.fixture
def embedded_env() -> Iterator[tuple[dict[str, str], Path]]:
    """An environment like `make run`'s: no DATABASE_URL, the embedded data dir in a fresh temp dir."""
    root = Path(tempfile.mkdtemp(prefix="loyalty-embedded-pg-"))
    data_dir = root / "pg"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY"}}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        LOYALTY_EMBEDDED_PG_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    yield env, data_dir
    # Stop the server even when the test failed half-way, then delete its data.
    subprocess.run([sys.executable, "-m", "config.embedded_pg", "stop"], cwd=BASE_DIR, env=env, check=False)
    pid = _postmaster_pid(data_dir)
    if pid is not None:  # `stop` failed: kill this test's own postmaster, if it still is one
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.name().startswith("postgres"):
                proc.send_signal(signal.SIGQUIT)
    shutil.rmtree(root, ignore_errors=True)


def test_migrate_runserver_and_stop_on_the_embedded_database(embedded_env, tmp_path):
    env, data_dir = embedded_env
    manage = [sys.executable, str(BASE_DIR / "manage.py")]

    migrate = subprocess.run([*manage, "migrate", "--noinput"], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "Applying loyalty.0001_initial... OK" in migrate.stdout

    # The server outlived `migrate`; the next process (runserver) reuses it.
    pid = _postmaster_pid(data_dir)
    assert pid is not None
    status = subprocess.run(
        [sys.executable, "-m", "config.embedded_pg", "status"], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"running (pid {pid})" in status.stdout

    port = _free_port()
    log_path = tmp_path / "runserver.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # No deadline: on a busy machine start-up may take long. Waits while runserver lives and
        # the connection is refused (not listening yet); any other error (no loopback) fails.
        while True:
            try:
                health = _get(f"http://127.0.0.1:{port}/health")
                break
            except OSError as exc:
                reason = getattr(exc, "reason", exc)  # urllib wraps the socket's error
                if not isinstance(reason, ConnectionRefusedError | TimeoutError):
                    pytest.fail(f"cannot reach runserver at 127.0.0.1:{port} ({exc!r}):\n{log_path.read_text()}")
                if server.poll() is not None:
                    pytest.fail(f"runserver exited:\n{log_path.read_text()}")
                time.sleep(0.25)
        assert health[0] == 200
        assert json.loads(health[1]) == {"status": "ok"}

        status_code, body = _get(f"http://127.0.0.1:{port}/admin/login/")
        assert status_code == 200
        assert b'name="password"' in body
    finally:
        server.terminate()
        try:
            server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    assert _postmaster_pid(data_dir) == pid, "runserver should have reused the server migrate started"

    stop = subprocess.run(
        [sys.executable, "-m", "config.embedded_pg", "stop"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stopped" in stop.stdout
    assert not (data_dir / "postmaster.pid").exists()


# --- killed at any moment ------------------------------------------------------------------


def _embedded(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "config.embedded_pg", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )


def _url_works(env: dict[str, str]) -> str:
    """`python -m config.embedded_pg url` succeeds and its URL accepts a connection."""
    url = _embedded(env, "url")
    assert url.returncode == 0, url.stdout + url.stderr
    probe = _embedded(env, "probe", url.stdout.strip())
    assert probe.returncode == 0, probe.stdout + probe.stderr
    return url.stdout.strip()


@pytest.mark.parametrize("content", ["", "[123", "\x00\x00", '{"pids": 1}'])
def test_a_corrupt_handle_list_neither_stops_a_start_nor_a_stop(embedded_env, content):
    """What a process killed while pgserver rewrote `.handle_pids.json` leaves behind (an empty
    file in 3 of 12 SIGTERMs of `make run`): the next start, with the server running or
    stopped, works and leaves a valid list."""
    env, data_dir = embedded_env
    _url_works(env)
    handles = data_dir / ".handle_pids.json"

    handles.write_text(content)  # the server still runs
    _url_works(env)
    assert isinstance(json.loads(handles.read_text()), list)

    handles.write_text(content)
    stop = _embedded(env, "stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    handles.write_text(content)  # and with the server stopped
    _url_works(env)
    assert isinstance(json.loads(handles.read_text()), list)


def _kill_when(proc: subprocess.Popen, ready) -> None:
    """SIGKILL `proc` as soon as `ready()` holds (or let it finish if it gets there first)."""
    while proc.poll() is None and not ready():
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize(
    "moment",
    ["postmaster.pid written", "server ready", "handle list written"],
)
def test_the_next_start_works_after_the_starting_process_is_killed(embedded_env, moment):
    env, data_dir = embedded_env
    _url_works(env)  # an initialised data directory
    assert _embedded(env, "stop").returncode == 0
    handles = data_dir / ".handle_pids.json"
    handles.unlink(missing_ok=True)
    ready = {
        "postmaster.pid written": lambda: (data_dir / "postmaster.pid").exists(),
        "server ready": lambda: "ready" in _read(data_dir / "postmaster.pid"),
        "handle list written": handles.exists,
    }[moment]

    starting = subprocess.Popen([sys.executable, "-m", "config.embedded_pg", "url"], cwd=BASE_DIR, env=env)
    _kill_when(starting, ready)

    _url_works(env)
    assert _embedded(env, "status").returncode == 0


def test_the_next_start_works_after_a_stop_is_killed(embedded_env):
    env, data_dir = embedded_env
    _url_works(env)
    pid = _postmaster_pid(data_dir)
    stopping = subprocess.Popen([sys.executable, "-m", "config.embedded_pg", "stop"], cwd=BASE_DIR, env=env)

    # Killed once the postmaster got the signal (it shuts down without the stopping process).
    def signalled() -> bool:
        return pid is None or not psutil.pid_exists(pid) or "stopping" in _read(data_dir / "postmaster.pid")

    _kill_when(stopping, signalled)

    _url_works(env)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
