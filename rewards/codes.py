"""Coupon codes: random (from `secrets`, not guessable), 12 characters in groups of four
(`XXXX-XXXX-XXXX`) from an alphabet without look-alikes, so a cashier can read one out and
type it. 20 symbols ** 12 is about 4 * 10**15 codes: with a billion coupons issued, a guess hits one
with a chance of about 1 in 4 * 10**6 — and lookups are rate limited per key."""

from __future__ import annotations

import secrets

# No 0/O/D/Q, 1/I/L, 2/Z, 5/S, 8/B, U/V: what survives reads unambiguously aloud and on paper.
ALPHABET = "ACEFGHJKMNPRTWXY3467"
GROUPS, GROUP_SIZE = 3, 4
LENGTH = GROUPS * GROUP_SIZE


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i : i + GROUP_SIZE] for i in range(0, LENGTH, GROUP_SIZE))


def normalize(code: str) -> str:
    """A code as typed (any case, spaces or dashes anywhere) in its stored form; "" when it
    cannot be one of ours (so a look-up costs no query)."""
    raw = "".join(ch for ch in (code or "").upper() if ch not in " -")
    if len(raw) != LENGTH or any(ch not in ALPHABET for ch in raw):
        return ""
    return "-".join(raw[i : i + GROUP_SIZE] for i in range(0, LENGTH, GROUP_SIZE))
