"""A small in-process memo of yes/no answers such as "does program P have an active automation
for trigger T?" or "does any webhook endpoint of program P want event E?".

Signal receivers ask such a question for every event; a nightly job that changes 600,000 tiers
sends 600,000 signals, and one query per signal per receiver would cost minutes. The answer is
kept for `ttl` seconds in this process and forgotten at once when the app's configuration
changes in this process (its owner calls `clear()` from a post_save/post_delete receiver);
other processes see a change within `ttl` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Values computed on demand and kept `ttl` seconds in this process (thread-safe). Keep
    only small, read-only values in it (callers share them)."""

    def __init__(self, *, ttl: float = 5.0) -> None:
        self._ttl = ttl
        self._values: dict[Hashable, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = compute()
        with self._lock:
            self._values[key] = (now + self._ttl, value)
        return value

    def clear(self, *args: object, **kwargs: object) -> None:
        """Forget every value (usable directly as a signal receiver)."""
        with self._lock:
            self._values.clear()


class PresenceCache(TtlCache[bool]):
    """A `TtlCache` of yes/no answers."""
