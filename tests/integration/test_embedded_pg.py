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
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http://127.0.0.1 only)
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
    subprocess.run([sys.executable, "-m", "config.embedded_pg", "stop"], cwd=BASE_DIR, env=env, timeout=60, check=False)
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

    migrate = subprocess.run(
        [*manage, "migrate", "--noinput"], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
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
        deadline = time.monotonic() + 40
        while True:
            try:
                health = _get(f"http://127.0.0.1:{port}/health")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"runserver did not answer:\n{log_path.read_text()}")
                time.sleep(0.25)
        assert health[0] == 200
        assert json.loads(health[1]) == {"status": "ok"}

        status_code, body = _get(f"http://127.0.0.1:{port}/admin/login/")
        assert status_code == 200
        assert b'name="password"' in body
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
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
        timeout=60,
    )
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stopped" in stop.stdout
    assert not (data_dir / "postmaster.pid").exists()
