"""`make run`: prepare the database and the demo, then run the web server, a Celery worker and
Celery beat together until Ctrl-C (or SIGTERM), which stops all three.

    python -m config.devrun [--host 127.0.0.1] [--port 8000] [--no-demo]

Steps, each a `manage.py` process: `migrate` (its output is summed up in one line, shown whole
only on failure), `createcachetable` (a no-op unless CACHE_URL names a database cache) and
`load_demo` (its emails go to files, not to the console; it hands the staff login over in a
file). Then the three long-running processes start, each in its own session with its output in
a log file under .data/logs (`LOYALTY_LOG_DIR` moves it): web.log, worker.log, beat.log. Once
the web server answers, this prints where each log goes and, last, the staff logins (a
superuser and one user per role).

Stopping: SIGTERM to each process (runserver and beat stop; the worker finishes its running
tasks), then, after a grace period or at a second Ctrl-C, SIGQUIT (the worker's cold shutdown:
its broker gets the unfinished messages back), then SIGKILL to what is left of each group. On Linux each child also gets
a signal if this supervisor dies without cleaning up (PR_SET_PDEATHSIG: SIGTERM for the worker,
SIGKILL for web and beat), so none is orphaned.
If one of the three exits by itself, the others are stopped and `make run` fails, naming its log.

This module imports no Django: the settings (config/settings/local.py) are read by the children.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BASE_DIR = Path(__file__).resolve().parent.parent
GRACE_SECONDS = 20.0  # after SIGTERM, before SIGKILL (a worker finishing a task may need it)
WEB_WAIT_NOTE_SECONDS = 60.0  # say why nothing happens yet; never give up while web lives


class Stop(Exception):
    """A stop signal arrived (Ctrl-C, SIGTERM, SIGHUP)."""


_signals_received: list[int] = []


def _on_signal(signum: int, _frame: object) -> None:
    _signals_received.append(signum)


def _check_stop() -> None:
    if _signals_received:
        raise Stop


def _child_setup(death_signal: int) -> Callable[[], None]:
    """In the child, before exec: a new session (no terminal Ctrl-C; one group to signal), and
    `death_signal` from the kernel when the parent dies (Linux)."""

    def setup() -> None:
        os.setsid()
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(1, death_signal)  # PR_SET_PDEATHSIG

    return setup


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: Path
    # Sent by the kernel if the supervisor dies without stopping it: the worker gets SIGTERM (a
    # warm shutdown gives its messages back); web and beat hold nothing worth a clean exit and
    # get SIGKILL (beat was seen to outlive a SIGTERM sent while it was dispatching).
    death_signal: int = signal.SIGKILL
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter and manage.py)
            self.argv,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup(self.death_signal),  # safe: this process starts no threads
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def group_alive(self) -> bool:
        """The leader or any other process of its group (a worker's pool children) still runs."""
        if self.proc is None:
            return False
        self.proc.poll()  # reap the leader if it exited
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _run_step(argv: Sequence[str], env: dict[str, str], *, capture: bool) -> tuple[int, str]:
    """Run a one-shot command in this process group (Ctrl-C reaches it too); on SIGTERM, end it.
    With `capture`, its output is returned instead of shown."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(  # noqa: S603
            list(argv),
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out if capture else None,
            stderr=subprocess.STDOUT if capture else None,
        )
        try:
            while proc.poll() is None:
                _check_stop()
                time.sleep(0.1)
            _check_stop()
        except Stop:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        out.seek(0)
        return proc.returncode, out.read().decode(errors="replace")


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "config.celery_app", *args]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our own http://host:port)
            return response.status == 200
    except OSError:
        return False


def _broker_words(env: dict[str, str]) -> str:
    broker = env.get("CELERY_BROKER_URL", "")
    if broker:
        return f"broker {broker.split('@')[-1] if '@' in broker else broker}"
    queue_dir = env.get("LOYALTY_CELERY_DIR") or str(BASE_DIR / ".data" / "celery")
    return f"broker: files in {_relative(Path(queue_dir))}"


def prepare(env: dict[str, str], *, demo: bool, login_file: Path, demo_emails: Path) -> None:
    """migrate (quietly), createcachetable, load_demo. Exits on failure."""
    code, output = _run_step(_manage("migrate", "--noinput"), env, capture=True)
    if code != 0:
        sys.stdout.write(output)
        raise SystemExit(f"make run: migrate failed (exit {code})")
    applied = sum(1 for line in output.splitlines() if line.strip().startswith("Applying "))
    print(f"Database schema: {f'{applied} migrations applied' if applied else 'up to date'}.")

    code, output = _run_step(_manage("createcachetable"), env, capture=True)
    if code != 0:
        sys.stdout.write(output)
        raise SystemExit(f"make run: createcachetable failed (exit {code})")

    if not demo:
        return
    print("Demo data: loading (the first run takes a few minutes)...", flush=True)
    shutil.rmtree(demo_emails, ignore_errors=True)  # only this run's emails
    demo_env = {
        **env,
        # The demo's automations send emails: to files, not to this console.
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(demo_emails),
        # Its own summary lines say what it made; the jobs' INFO logs would only bury them.
        "DJANGO_LOG_LEVEL": env.get("DJANGO_LOG_LEVEL", "WARNING"),
    }
    code, _ = _run_step(_manage("load_demo", "--login-file", str(login_file)), demo_env, capture=False)
    if code != 0:
        raise SystemExit(f"make run: load_demo failed (exit {code})")
    if demo_emails.is_dir() and any(demo_emails.iterdir()):
        print(f"Demo data: the emails its automations sent are in {_relative(demo_emails)}/ (one file per batch).")


def start(services: list[Service], env: dict[str, str], web_url: str) -> None:
    """Start the services and wait until the web server answers (no time limit while all live)."""
    for service in services:
        service.start(env)
    started = time.monotonic()
    noted = False
    while not _answers(web_url + "health"):
        _check_alive(services)
        if not noted and time.monotonic() - started > WEB_WAIT_NOTE_SECONDS:
            print(f"Still waiting for the web server to answer; see {_relative(services[0].log_path)}", flush=True)
            noted = True
        time.sleep(0.5)


def watch(services: list[Service]) -> None:
    """Until a stop signal (Stop) or the exit of a service (ServiceDied)."""
    while True:
        _check_alive(services)
        time.sleep(0.5)


def _check_alive(services: list[Service]) -> None:
    _check_stop()
    for service in services:
        if not service.alive():
            raise ServiceDied(service)


class ServiceDied(Exception):
    def __init__(self, service: Service) -> None:
        super().__init__(service.name)
        self.service = service


def stop(services: list[Service]) -> None:
    """SIGTERM to each leader (a worker lets its pool finish the running tasks); after the grace
    period or at another Ctrl-C, SIGQUIT (a worker's cold shutdown: its broker gets the unfinished
    messages back); a few seconds later, or at a third Ctrl-C, SIGKILL to what is left of each group."""
    running = [s for s in services if s.group_alive()]
    if not running:
        return
    print(f"Stopping {', '.join(s.name for s in running)}...", flush=True)
    _signals_received.clear()
    steps = [(signal.SIGTERM, GRACE_SECONDS), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)]
    for index, (signum, wait) in enumerate(steps):
        left = [s for s in running if s.group_alive()]
        if not left:
            break
        if index:
            print(f"  {', '.join(s.name for s in left)} still running: {signal.Signals(signum).name}.", flush=True)
        for service in left:
            if signum == signal.SIGKILL:
                service.signal_group(signum)
            elif service.proc is not None and service.proc.poll() is None:
                service.proc.send_signal(signum)
        seen = len(_signals_received)
        deadline = time.monotonic() + wait
        noted = False
        while any(s.group_alive() for s in left) and time.monotonic() < deadline and len(_signals_received) == seen:
            if index == 0 and not noted and time.monotonic() > deadline - wait + 10:
                busy = [s.name for s in left if s.group_alive()]
                print(f"  waiting for {', '.join(busy)} to finish (Ctrl-C again to stop it now)...", flush=True)
                noted = True
            time.sleep(0.1)
    for service in services:
        if service.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.proc.wait(timeout=5)
        if service.log_file is not None:
            service.log_file.close()
    print("Stopped.", flush=True)


def services_for(host: str, port: int, log_dir: Path, worker_concurrency: int = 2) -> list[Service]:
    """The three long-running processes of `make run`: web, worker, beat (in this order)."""
    return [
        Service("web", _manage("runserver", "--noreload", f"{host}:{port}"), log_dir / "web.log"),
        Service(
            "worker",
            _celery("worker", "--loglevel", "INFO", "--concurrency", str(worker_concurrency)),
            log_dir / "worker.log",
            death_signal=signal.SIGTERM,
        ),
        Service(
            "beat",
            _celery("beat", "--loglevel", "INFO", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"),
            log_dir / "beat.log",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.devrun", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-demo", action="store_true", help="skip load_demo (no staff login is printed)")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery worker processes (default 2)")
    args = parser.parse_args(argv)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    env["PYTHONUNBUFFERED"] = "1"
    log_dir = Path(env.get("LOYALTY_LOG_DIR") or BASE_DIR / ".data" / "logs").absolute()
    log_dir.mkdir(parents=True, exist_ok=True)
    web_url = f"http://{args.host}:{args.port}/"

    services = services_for(args.host, args.port, log_dir, args.worker_concurrency)
    fd, login_name = tempfile.mkstemp(prefix="login-", suffix=".json", dir=log_dir)
    os.close(fd)
    login_file = Path(login_name)
    try:
        prepare(env, demo=not args.no_demo, login_file=login_file, demo_emails=log_dir / "demo-emails")
        start(services, env, web_url)
        login = json.loads(login_file.read_text() or "{}")
        login_file.unlink()
        print()
        print("Running; Ctrl-C stops all three. Logs:")
        print(f"  web     {web_url}  (Django runserver)  {_relative(services[0].log_path)}")
        print(f"  worker  Celery worker, {_broker_words(env)}  {_relative(services[1].log_path)}")
        print(f"  beat    Celery beat, schedules from the database  {_relative(services[2].log_path)}")
        if login:
            print()
            print("Staff login")
            print(f"  URL:      {web_url}admin/")
            print(f"  Username: {login['username']}")
            print(f"  Password: {login['password']}")
            if login.get("roles"):  # one login per role (docs/back-office.md, "Roles and programs")
                print("  Roles (same URL, user / password):")
                for role in login["roles"]:
                    print(f"    {role['role']:<30} {role['username']} / {role['password']}")
        sys.stdout.flush()
        watch(services)
    except Stop:
        stop(services)
        return 0
    except ServiceDied as died:
        code = died.service.proc.returncode if died.service.proc else None
        print(f"make run: {died.service.name} exited (code {code}); see {_relative(died.service.log_path)}", flush=True)
        stop(services)
        return 1
    finally:
        with contextlib.suppress(FileNotFoundError):
            login_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
