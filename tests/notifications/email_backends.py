"""Email backends for the delivery tests: one that waits inside the send until released (to
hold a send open while another worker tries), one that fails as scripted (an ESP error)."""

from __future__ import annotations

import threading

from anymail.exceptions import AnymailAPIError
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend


class Gate:
    """Shared by the test and the backend: `entered` is set once a send has begun; the send
    then waits for `release`."""

    entered = threading.Event()
    release = threading.Event()

    @classmethod
    def reset(cls) -> None:
        cls.entered = threading.Event()
        cls.release = threading.Event()


class HeldBackend(LocmemBackend):
    def send_messages(self, messages):  # type: ignore[no-untyped-def]
        Gate.entered.set()
        if not Gate.release.wait(timeout=60):
            raise RuntimeError("the test never released the send")
        return super().send_messages(messages)


class Script:
    """How many of the next sends fail (then they succeed)."""

    failures = 0


class FailingBackend(LocmemBackend):
    def send_messages(self, messages):  # type: ignore[no-untyped-def]
        if Script.failures:
            Script.failures -= 1
            raise AnymailAPIError("Mailgun API response 503: Service Unavailable")
        return super().send_messages(messages)
