"""Card numbers and claim PINs.

A number is the program's prefix, random digits, and a Luhn check digit: random so that one
card's number says nothing about another's (not enumerable), checked so that a mistyped
number is refused before any database look-up. Uniqueness is the database's job (a unique
index; callers retry on conflict), never a `max() + 1`.

A PIN is derived from the number with a keyed HMAC (`settings.CARD_PIN_SECRET`), so it is
never stored and a sheet can be reprinted with the same PINs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from stdnum import luhn

PIN_LENGTH = 6

# Luhn doubles every second digit counting from the right end of the body (the check digit is
# appended after it) and adds the digits of the double: 0->0, 1->2, ..., 5->1 (10), ..., 9->9 (18).
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def luhn_check_digit(body: str) -> str:
    """The Luhn check digit that makes `body + digit` valid (`body`: ASCII digits); equal to
    `stdnum.luhn.calc_check_digit(body)` (tests/cards/test_numbers.py proves it) at about a
    sixth of its cost. The digit sum is -(doubled digits + the others) mod 10; each sum runs in
    C over the bytes of the digits (b"0" is 48, so n digits sum to 48 * n more than their
    values), with no per-digit Python arithmetic."""
    return str((48 * len(body) - sum(body[-1::-2].translate(_LUHN_DOUBLED).encode()) - sum(body[-2::-2].encode())) % 10)


def is_well_formed(number: str) -> bool:
    """Digits only, a plausible length, and a valid check digit. No database access."""
    return number.isdigit() and 8 <= len(number) <= 32 and luhn.is_valid(number)


def normalize(number: str) -> str:
    """What a person typed or a scanner read: spaces and dashes are dropped."""
    return "".join(ch for ch in str(number) if ch not in " -\t")


def random_number(prefix: str, length: int) -> str:
    """A random, check-digited number of `length` digits starting with `prefix`."""
    body_length = length - len(prefix) - 1
    if body_length < 6:
        raise ValueError("The card number is too short for its prefix: fewer than 6 random digits.")
    body = prefix + str(secrets.randbelow(10**body_length)).zfill(body_length)
    return body + luhn_check_digit(body)


def random_numbers(prefix: str, length: int, count: int) -> list[str]:
    """`count` random numbers (possibly repeating; the database decides uniqueness)."""
    body_length = length - len(prefix) - 1
    if body_length < 6:
        raise ValueError("The card number is too short for its prefix: fewer than 6 random digits.")
    limit = 10**body_length
    # The hot loop of a batch (a million draws): luhn_check_digit inlined, names bound locally.
    randbelow, doubled = secrets.randbelow, _LUHN_DOUBLED
    offset = 48 * (length - 1)  # every body has length - 1 digits
    out = []
    append = out.append
    for _ in range(count):
        body = prefix + str(randbelow(limit)).zfill(body_length)
        check = (offset - sum(body[-1::-2].translate(doubled).encode()) - sum(body[-2::-2].encode())) % 10
        append(body + str(check))
    return out


def pin_for(number: str) -> str:
    """The claim PIN printed on the card: HMAC-SHA256 of the number, as 6 digits."""
    digest = hmac.new(settings.CARD_PIN_SECRET.encode(), number.encode(), hashlib.sha256).digest()
    return str(int.from_bytes(digest[:8], "big") % 10**PIN_LENGTH).zfill(PIN_LENGTH)


def pin_matches(number: str, pin: str) -> bool:
    return hmac.compare_digest(pin_for(number), normalize(pin))
