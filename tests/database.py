"""Second connections to the test database, for tests that need another session or process.

They go to the server Django's own connection uses, whatever it is: the local server over
TCP, or the embedded PostgreSQL over its unix socket (`make test` on a machine with no
database server, where the socket directory is an option of the connection, not its HOST).
Derived from `connection.get_connection_params()`, never from defaults such as
127.0.0.1:5432 or libpq's /var/run/postgresql.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from django.db import connection

# psycopg objects Django adds to the parameters; not libpq options.
_NOT_LIBPQ = {"cursor_factory", "context", "prepare_threshold", "client_encoding"}


def libpq_params(**overrides: Any) -> dict[str, Any]:
    """The libpq parameters (dbname, user, host, port, ...) of Django's default connection."""
    params = {k: v for k, v in connection.get_connection_params().items() if k not in _NOT_LIBPQ}
    params.update(overrides)
    return {k: v for k, v in params.items() if v not in (None, "")}


def connect(**kwargs: Any) -> psycopg.Connection:
    """A new psycopg connection to the test database (`kwargs`: e.g. autocommit=True)."""
    return psycopg.connect(**libpq_params(), **kwargs)


def database_url(**options: Any) -> str:
    """A DATABASE_URL for a subprocess (parsed by django-environ): the test database on the
    same server, with extra libpq `options` (e.g. application_name) as query parameters."""
    params = libpq_params(**options)
    name = params.pop("dbname")
    auth = quote(str(params.pop("user", "")), safe="")
    if "password" in params:
        auth += ":" + quote(str(params.pop("password")), safe="")
    host = str(params.get("host", ""))
    netloc = ""
    if host and not host.startswith("/") and "," not in host:  # a TCP host goes in the URL proper
        netloc = host if ":" not in host else f"[{host}]"
        del params["host"]
        if "port" in params:
            netloc += f":{params.pop('port')}"
    # A socket directory (and its port, which names the socket file) stays a query parameter.
    query = urlencode({k: str(v) for k, v in params.items()})
    return f"postgres://{auth}@{netloc}/{quote(name, safe='')}" + (f"?{query}" if query else "")
