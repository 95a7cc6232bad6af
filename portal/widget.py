"""The shop widget's tokens (docs/portal.md, "The shop widget").

The shop's backend proves which of its customers is looking at its page by signing the
customer's id (`Member.external_id`, the API's `external_id`) and an expiry with the program's
widget secret:

    token   = "v1." + ref + "." + expires + "." + signature
    ref     = base64url(UTF-8 customer id), without "=" padding
    expires = Unix time (seconds) after which the token is refused; at most 24 h ahead
    signed  = "v1." + program slug + "." + ref + "." + expires
    signature = base64url(HMAC-SHA256(key = the secret as UTF-8, message = signed)), no padding

The program's slug is part of what is signed (not of the token): a token made for one program
never passes another's check, even with the same secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from loyalty.models import Program

VERSION = "v1"
MAX_LIFETIME = 24 * 3600  # seconds: a token may not claim to be valid longer than this
CLOCK_SKEW = 300  # seconds of the shop's clock running ahead that are forgiven
MAX_TOKEN_LENGTH = 600
_TOKEN = re.compile(r"v1\.([A-Za-z0-9_-]{1,400})\.(\d{1,12})\.([A-Za-z0-9_-]{43})")


class TokenError(Exception):
    """A refused token; `code` says why (the widget's JSON error code)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class WidgetToken:
    customer_ref: str  # the member's external_id
    expires: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, slug: str, ref: str, expires: str) -> str:
    message = f"{VERSION}.{slug}.{ref}.{expires}".encode()
    return _b64(hmac.new(secret.encode(), message, hashlib.sha256).digest())


def token_make(*, program: Program, customer_ref: str, lifetime: int = 3600, now: float | None = None) -> str:
    """A token for `customer_ref` of `program`, valid `lifetime` seconds: what a shop's backend
    computes (here for the `widget_token` command, the demo and the tests)."""
    if not program.widget_secret:
        raise TokenError("widget_off")
    expires = str(int((time.time() if now is None else now) + lifetime))
    ref = _b64(customer_ref.encode())
    return f"{VERSION}.{ref}.{expires}.{_signature(program.widget_secret, program.slug, ref, expires)}"


def token_read(*, program: Program, token: str, now: float | None = None) -> WidgetToken:
    """The customer reference `token` carries for `program`, once its signature and expiry are
    checked; else TokenError with the reason: widget_off, token_missing, token_malformed,
    token_invalid (the signature: forged, tampered, another program's or an old secret's),
    token_expired, token_lifetime (expiring more than 24 h ahead)."""
    if not program.widget_secret:
        raise TokenError("widget_off")
    if not token:
        raise TokenError("token_missing")
    match = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN_LENGTH else None
    if match is None:
        raise TokenError("token_malformed")
    ref, expires, signature = match.groups()
    expected = _signature(program.widget_secret, program.slug, ref, expires)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise TokenError("token_invalid")
    moment = time.time() if now is None else now
    if int(expires) <= moment:
        raise TokenError("token_expired")
    if int(expires) > moment + MAX_LIFETIME + CLOCK_SKEW:
        raise TokenError("token_lifetime")
    try:
        customer_ref = _unb64(ref).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:  # signed, yet not UTF-8: the shop's bug
        raise TokenError("token_malformed") from exc
    if not customer_ref.strip():
        raise TokenError("token_malformed")
    return WidgetToken(customer_ref=customer_ref, expires=int(expires))
