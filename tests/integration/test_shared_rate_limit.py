"""The per-key API rate limit holds across web processes: its counters live in the configured
cache (config/settings/base.py), shared by every process, not in each process's memory.

Two gunicorn processes (one worker each, on two ports) serve the test database; requests
alternate between them. With the embedded default's file cache and, when a Redis server
answers on 127.0.0.1:6379, with Django's RedisCache (production, `make services`).
"""

from __future__ import annotations

import socket
import sys
import uuid
from pathlib import Path

import pytest

from loyalty.services import api_key_create
from tests.integration import processes
from tests.loyalty.factories import MemberFactory, ProgramFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LIMIT = 6  # requests per hour: no window can roll over during the test, however slow


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _cache_env(kind: str, tmp_path: Path) -> dict[str, str]:
    if kind == "file":
        return {}  # no REDIS_URL / CACHE_URL: the file cache in LOYALTY_CACHE_DIR
    if not _redis_answers():
        pytest.skip("no Redis server on 127.0.0.1:6379")
    # A database of its own and a fresh prefix: nothing else's keys are read or written.
    return {"REDIS_URL": "redis://127.0.0.1:6379/13", "CACHE_KEY_PREFIX": f"test-{uuid.uuid4().hex}"}


def make_key(program, scopes):
    """A saved key of `program` and its secret."""
    return api_key_create(program=program, name="rate limit test", scopes=list(scopes))


@pytest.fixture
def two_servers(transactional_db, tmp_path, request):
    """Two gunicorn processes on two ports with one shared cache; yields their base URLs."""
    env = processes.base_env(tmp_path, API_RATE_LIMIT=f"{LIMIT}/hour", **_cache_env(request.param, tmp_path))
    servers = []
    try:
        for index in range(2):
            port = processes.free_port()
            log = tmp_path / f"gunicorn-{index}.log"
            argv = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
            argv += ["--timeout", "120", "--no-control-socket"]
            servers.append((processes.start(argv, env, log), f"http://127.0.0.1:{port}", log))
        for proc, url, log in servers:
            processes.wait_for(
                f"gunicorn at {url}", lambda url=url: processes.answers(url + "/health"), procs=[proc], logs=[log]
            )
        yield [url for _, url, _ in servers]
    finally:
        for proc, _, _ in servers:
            processes.stop(proc)


@pytest.mark.parametrize("two_servers", ["file", "redis"], indirect=True)
def test_the_rate_limit_of_an_api_key_is_counted_once_across_two_server_processes(two_servers):
    program = ProgramFactory()
    member = MemberFactory(program=program)
    _, secret = make_key(program, scopes=["read"])
    headers = {"Authorization": f"Api-Key {secret}"}

    answers = []
    for index in range(LIMIT + 2):
        server = two_servers[index % 2]
        answers.append(processes.http_get(f"{server}/api/v1/members/{member.pk}", headers))

    statuses = [status for status, _, _ in answers]
    assert statuses == [200] * LIMIT + [429, 429], statuses
    for _, response_headers, _ in answers[LIMIT:]:
        assert int(response_headers["Retry-After"]) >= 1
    # Each process answered half of the allowed requests: neither counted only its own.
    assert {two_servers[i % 2] for i in range(LIMIT)} == set(two_servers)


@pytest.mark.parametrize("two_servers", ["file"], indirect=True)
def test_another_key_of_the_same_program_keeps_its_own_count_across_processes(two_servers):
    program = ProgramFactory()
    member = MemberFactory(program=program)
    first = {"Authorization": f"Api-Key {make_key(program, scopes=['read'])[1]}"}
    second = {"Authorization": f"Api-Key {make_key(program, scopes=['read'])[1]}"}

    for index in range(LIMIT):
        assert processes.http_get(f"{two_servers[index % 2]}/api/v1/members/{member.pk}", first)[0] == 200
    assert processes.http_get(f"{two_servers[0]}/api/v1/members/{member.pk}", first)[0] == 429

    assert processes.http_get(f"{two_servers[1]}/api/v1/members/{member.pk}", second)[0] == 200
