"""Embedded PostgreSQL for a machine with no database server (the default of `make run`).

The `pgserver` wheel carries PostgreSQL's binaries; the data lives in `.data/pg` (git-ignored;
`LOYALTY_EMBEDDED_PG_DIR` points elsewhere). The server listens on a unix socket only, in the
data directory, and is left running after the process exits so that `migrate`, `load_demo` and
`runserver` (separate processes) share it; `make stop-db` stops it.

What this module adds to pgserver (read in its source, version 0.1.4):
- one inter-process lock per data directory around start-up and database creation, so any
  number of processes may call `database_url()` at once (pgserver's own lock lives in
  `$XDG_RUNTIME_DIR`, which differs between shells, cron and CI);
- a usable runtime directory when `$XDG_RUNTIME_DIR` is unset or not writable (pgserver would
  try `/run/user/<uid>`);
- a stale `postmaster.pid` (its PID reused by another program after a reboot) is removed,
  and a server that is still starting or stopping is waited for;
- as root, pgserver runs PostgreSQL as the OS user `pgserver` (created with `useradd`), chowns
  the data directory to it and opens the parent directories for traversal (g+rx, o+rx);
- the `loyalty` database is created once, race-free;
- pgserver's list of handles (`.handle_pids.json` in the data directory, rewritten by every
  process at start and at exit with a truncating write) is written atomically and read
  tolerantly: a process killed in the middle of that write left it empty, and every later
  start failed with a JSONDecodeError. The list only matters to pgserver's "stop the server
  when the last handle exits" mode, which this module doesn't use (the server outlives its
  processes), so a corrupt list is simply reset.

Command line (used by the Makefile): `python -m config.embedded_pg url|stop|status`,
`python -m config.embedded_pg probe URL` and `python -m config.embedded_pg ensure-database URL`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LOYALTY_EMBEDDED_PG_DIR") or BASE_DIR / ".data" / "pg").expanduser().absolute()
DATABASE_NAME = "loyalty"
SETTLE_TIMEOUT = 60.0  # seconds to wait for a server that is starting or stopping

# pgserver logs every command at INFO, also from its atexit hook after Django configured logging.
logging.getLogger("pgserver").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------
# public API


def database_url(data_dir: Path | None = None) -> str:
    """Start (or reuse) the embedded server, create the `loyalty` database, return its URL.

    The URL is understood by django-environ and by libpq (`psql`, psycopg).
    """
    from psycopg.conninfo import make_conninfo

    data_dir = _resolve(data_dir)
    with _lock(data_dir):
        socket_dir = _ensure_running(data_dir)
        _create_database(make_conninfo(host=str(socket_dir), user="postgres"), DATABASE_NAME)
    return f"postgres://postgres@/{DATABASE_NAME}?host={quote(str(socket_dir), safe='/')}"


def stop(data_dir: Path | None = None, timeout: float = SETTLE_TIMEOUT) -> bool:
    """Stop the embedded server ("fast" shutdown, as `pg_ctl stop -m fast`). True if it was running.

    Signals the postmaster directly: `pg_ctl` refuses to run as root, and as root the server
    belongs to the `pgserver` user.
    """
    data_dir = _resolve(data_dir)
    if not data_dir.exists():
        return False
    with _lock(data_dir):
        pid = _running_postmaster(data_dir)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while _running_postmaster(data_dir) == pid:
            if time.monotonic() > deadline:
                raise TimeoutError(f"embedded PostgreSQL (pid {pid}) did not stop within {timeout:.0f} s")
            time.sleep(0.1)
        return True


def status(data_dir: Path | None = None) -> int | None:
    """The PID of the running embedded server, or None."""
    return _running_postmaster(_resolve(data_dir))


def probe(url: str, timeout: int = 3) -> bool:
    """True if the PostgreSQL server of `url` accepts a connection (to its `postgres` database)."""
    import psycopg

    try:
        with psycopg.connect(url, dbname="postgres", connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


def ensure_database(url: str) -> bool:
    """Create the database named in `url` on its server if it is missing. True if created."""
    from psycopg.conninfo import conninfo_to_dict

    dbname = conninfo_to_dict(url).get("dbname")
    if not dbname:
        raise ValueError(f"no database name in {url!r}")
    return _create_database(url, str(dbname))


# ---------------------------------------------------------------------------------------------
# internals


def _resolve(data_dir: Path | None) -> Path:
    return Path(data_dir).expanduser().absolute() if data_dir is not None else DATA_DIR


@contextlib.contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    import fasteners  # a dependency of pgserver

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = fasteners.InterProcessLock(str(data_dir.parent / f".{data_dir.name}.lock"))
    with lock:
        yield


def _runtime_dir() -> Path:
    """A directory for pgserver's own lock (and its fallback socket directory)."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and os.path.isdir(current) and os.access(current, os.W_OK | os.X_OK):
        return Path(current)
    # Short on purpose: a socket path is limited to about 100 characters.
    path = Path(tempfile.gettempdir()) / f"loyalty-pgserver-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise RuntimeError(f"{path} belongs to another user; set XDG_RUNTIME_DIR")
    return path


def _import_pgserver() -> ModuleType:
    """Import pgserver; it reads XDG_RUNTIME_DIR once, at import (class attributes)."""
    if "pgserver" in sys.modules:
        return sys.modules["pgserver"]
    saved = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(_runtime_dir())
    try:
        import pgserver
        import pgserver.utils
    finally:
        if saved is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved
    _harden_handle_list(pgserver.utils.DiskList)
    return pgserver


HANDLE_LIST = ".handle_pids.json"  # pgserver's list of the processes holding a handle


def _read_handle_list(path: Path) -> list[int]:
    """pgserver's handle list; [] when missing or corrupt (e.g. truncated by a kill)."""
    try:
        values = json.loads(path.read_text())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return []
    if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
        return []
    return values


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, then rename it over `path`: a reader
    sees the old or the new content, never a truncated file, whenever the writer is killed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _harden_handle_list(disk_list: type) -> None:
    """Make pgserver's DiskList (utils.py: `json.loads(read_text())` / `write_text(json.dumps())`)
    tolerant on read and atomic on write. Idempotent."""
    if getattr(disk_list, "_loyalty_hardened", False):
        return
    disk_list.get = lambda self: _read_handle_list(Path(self.path))
    disk_list.put = lambda self, values: _write_atomically(Path(self.path), json.dumps(list(values)))
    disk_list._loyalty_hardened = True


def _repair_handle_list(data_dir: Path) -> None:
    """Reset a corrupt handle list and drop temporary files of writers killed mid-write."""
    path = data_dir / HANDLE_LIST
    for tmp in data_dir.glob(f".{HANDLE_LIST}.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
    if path.exists() and not _read_handle_list(path) and path.read_text(errors="replace").strip() != "[]":
        _write_atomically(path, "[]")


def _read_pidfile(data_dir: Path) -> tuple[int, str] | None:
    """(pid, status) from postmaster.pid, or None if absent or incomplete."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None
    state = lines[7].strip() if len(lines) > 7 else ""
    return pid, state


def _is_postgres(pid: int) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.name().startswith("postgres")
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # alive and not ours to inspect: assume it is the server


def _running_postmaster(data_dir: Path) -> int | None:
    info = _read_pidfile(data_dir)
    if info is None or not _is_postgres(info[0]):
        return None
    return info[0]


def _settle(data_dir: Path) -> None:
    """Wait while a server is starting or stopping; drop a postmaster.pid whose PID is not PostgreSQL."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        info = _read_pidfile(data_dir)
        if info is None:
            return
        pid, state = info
        if not _is_postgres(pid):
            # Left by a killed server; after a reboot its PID may belong to any program, and
            # both pgserver and postgres would then take the server for running.
            with contextlib.suppress(FileNotFoundError):
                (data_dir / "postmaster.pid").unlink()
            return
        if state == "ready":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"embedded PostgreSQL in {data_dir} stuck in state {state!r}; see {data_dir / 'log'}")
        time.sleep(0.2)


def _ensure_running(data_dir: Path) -> Path:
    """Start the server unless it runs; return its socket directory. Call with the lock held."""
    pgserver = _import_pgserver()
    _settle(data_dir)
    if data_dir.exists():
        _repair_handle_list(data_dir)
    try:
        # cleanup_mode=None: the server outlives this process (and every other handle).
        server = pgserver.get_server(data_dir, cleanup_mode=None)
        # A cached handle may describe a server stopped since (make stop-db): re-check.
        server.ensure_postgres_running()
    except subprocess.TimeoutExpired:
        # pgserver gives `pg_ctl -w start` 10 s; on a busy machine the server may come up later.
        _settle(data_dir)
        server = pgserver.get_server(data_dir, cleanup_mode=None)
        server.ensure_postgres_running()
    except subprocess.CalledProcessError as exc:
        log = data_dir / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"embedded PostgreSQL in {data_dir} failed to start ({exc}).\n{tail}") from exc
    socket_dir = server.get_postmaster_info().socket_dir
    if socket_dir is None:
        raise RuntimeError(f"embedded PostgreSQL in {data_dir} has no unix socket")
    return Path(socket_dir)


def _create_database(conninfo: str, dbname: str) -> bool:
    """Create `dbname` on the server of `conninfo` (connecting to its `postgres` database)."""
    import psycopg
    from psycopg import errors, sql

    with psycopg.connect(conninfo, dbname="postgres", autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except errors.DuplicateDatabase:  # created meanwhile by another process
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.embedded_pg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("url", help="start (or reuse) the embedded server and print the DATABASE_URL of `loyalty`")
    sub.add_parser("stop", help="stop the embedded server")
    sub.add_parser("status", help="print the server's PID; exit 1 if it is not running")
    p = sub.add_parser("probe", help="exit 0 if the PostgreSQL server of URL accepts connections")
    p.add_argument("url")
    p = sub.add_parser("ensure-database", help="create the database named in URL if missing")
    p.add_argument("url")
    args = parser.parse_args(argv)

    if args.command == "url":
        print(database_url())
    elif args.command == "stop":
        print(f"embedded PostgreSQL in {DATA_DIR}: {'stopped' if stop() else 'was not running'}")
    elif args.command == "status":
        pid = status()
        print(f"embedded PostgreSQL in {DATA_DIR}: " + (f"running (pid {pid})" if pid else "not running"))
        return 0 if pid else 1
    elif args.command == "probe":
        return 0 if probe(args.url) else 1
    elif args.command == "ensure-database":
        created = ensure_database(args.url)
        print(f"database of {args.url}: {'created' if created else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
