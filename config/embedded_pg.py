"""Embedded PostgreSQL for a machine with no database server (the default of `make run`).

The `pgserver` wheel carries PostgreSQL's binaries; the data lives in `.data/pg` (git-ignored).
The server is left running after the process exits so that `migrate`, `load_demo` and
`runserver` (separate processes) share it; `make stop-db` stops it.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LOYALTY_EMBEDDED_PG_DIR", BASE_DIR / ".data" / "pg"))
DATABASE_NAME = "loyalty"


def database_url() -> str:
    """Start (or reuse) the embedded server and return a URL django-environ understands."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(BASE_DIR / ".data" / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    import pgserver  # imported late: only the embedded path needs it

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(DATA_DIR, cleanup_mode=None)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgres://postgres@/{DATABASE_NAME}?host={socket_dir}"
