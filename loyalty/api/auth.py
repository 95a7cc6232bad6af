"""Who may call the API, and what for: the API key and its scopes (docs/api.md, "Keys and scopes").

Guarantees: a request with no key, or a key that is unknown, wrong, revoked, expired or of an
inactive program, is a 401 with `WWW-Authenticate: Api-Key`; a valid key without the scope the
operation needs is a 403 `insufficient_scope` whose message names the scope in words and whose
details carry it (`required_scope`). `request.auth` is the `ProgramAPIKey`, and its program is
the only program the request can reach.

A key verified once is remembered by this process for `API_KEY_CACHE_SECONDS` (default 5; 0
turns it off), with its program, so a request usually needs no query and no hash check for its
key (docs/performance.md). A change made in this process (saving or deleting a key or a
program, `api_key_revoke`) forgets everything remembered at once; a change made by another
process (another web worker, a command) reaches this one within `API_KEY_CACHE_SECONDS`. An
expiry date is checked on every request.
"""

from __future__ import annotations

import copy
import hashlib
import re
import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework_api_key.permissions import KeyParser

from loyalty.models import Program, ProgramAPIKey
from loyalty.signals import api_keys_changed

Scope = ProgramAPIKey.Scope

# What each scope opens, in the words of a 403's message.
SCOPE_PURPOSES = {
    Scope.READ: "reading members, cards, ledgers, rewards and tiers needs it, and so does seeing a member's "
    "data in the answer of a write",
    Scope.WRITE: "reporting activities, enrolling and changing members, assigning cards and redeeming need it",
    Scope.ADJUST: "manual point adjustments need it",
}


# Keys this process verified: sha256 of the full key -> (monotonic deadline, the key with its
# program). Only valid keys of active programs are remembered; each request gets copies.
_verified: dict[str, tuple[float, ProgramAPIKey]] = {}
_verified_lock = threading.Lock()
_clock = time.monotonic  # tests move it


def cache_seconds() -> float:
    return float(getattr(settings, "API_KEY_CACHE_SECONDS", 5))


def forget_verified_keys(**_kwargs: Any) -> None:
    """Forget every key this process remembers (a key or a program changed)."""
    with _verified_lock:
        _verified.clear()


def _remembered(digest: str) -> ProgramAPIKey | None:
    found = _verified.get(digest)
    if found is None:
        return None
    deadline, api_key = found
    if _clock() >= deadline:
        with _verified_lock:
            if _verified.get(digest) is found:
                del _verified[digest]
        return None
    # Copies: a request may cache related objects on its instances; the next must not see them.
    fresh = copy.copy(api_key)
    fresh.program = copy.copy(api_key.program)
    return fresh


def _remember(digest: str, api_key: ProgramAPIKey) -> None:
    seconds = cache_seconds()
    if seconds <= 0:
        return
    kept = copy.copy(api_key)
    kept.program = copy.copy(api_key.program)
    with _verified_lock:
        if len(_verified) >= 1000:  # a bound: many keys in turn just miss more often
            _verified.clear()
        _verified[digest] = (_clock() + seconds, kept)


@receiver(post_save, sender=ProgramAPIKey, dispatch_uid="api_keys_forget_on_key_save")
@receiver(post_delete, sender=ProgramAPIKey, dispatch_uid="api_keys_forget_on_key_delete")
@receiver(post_save, sender=Program, dispatch_uid="api_keys_forget_on_program_save")
@receiver(post_delete, sender=Program, dispatch_uid="api_keys_forget_on_program_delete")
@receiver(api_keys_changed, dispatch_uid="api_keys_forget_on_change")
def _forget_on_change(**kwargs: Any) -> None:
    # Now, and again at the commit: a request of another thread may have remembered the row
    # as it was before this transaction's change was visible.
    forget_verified_keys()
    transaction.on_commit(forget_verified_keys, robust=True)


class ProgramAPIKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <prefix>.<secret>` -> (AnonymousUser, the `ProgramAPIKey`).

    No header (or another scheme): None, so the permission turns it into 401. A key that is
    unknown, wrong, revoked or expired, or whose program is inactive: 401 at once. Revoked and
    expired are only told to a caller who holds the right secret. Queries: 1 (key by its
    unique prefix, program joined), none while this process remembers the key (the module's
    docstring); the hash check is one SHA-512.
    """

    keyword = KeyParser.keyword
    key_parser = KeyParser()
    _prefix = re.compile(r"[A-Za-z0-9]{8}")  # the library's `get_random_string(8)`

    def authenticate(self, request: Request) -> tuple[Any, ProgramAPIKey] | None:
        key = self.key_parser.get(request)
        if key is None:
            return None
        key = key.strip()
        digest = hashlib.sha256(key.encode()).hexdigest()
        api_key = _remembered(digest)
        if api_key is None:
            api_key = self._verify(key)
            _remember(digest, api_key)
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.", code="api_key_expired")
        # No Django user stands behind a key: services get no `actor` from the API.
        return AnonymousUser(), api_key

    def _verify(self, key: str) -> ProgramAPIKey:
        """The key from the database, checked; 401 unless it is valid and its program active."""
        prefix, dot, _secret = key.partition(".")
        api_key = None
        if dot and self._prefix.fullmatch(prefix):
            api_key = ProgramAPIKey.objects.select_related("program").filter(prefix=prefix).first()
        if api_key is None or not api_key.is_valid(key):
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if api_key.revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.", code="api_key_expired")
        if not api_key.program.is_active:
            raise exceptions.AuthenticationFailed("This API key's program is not active.", code="program_inactive")
        return api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class InsufficientScope(exceptions.PermissionDenied):
    """403 naming the missing scope in words; `details` has it and the key's scopes."""

    default_code = "insufficient_scope"

    def __init__(self, required: str, granted: list[str]) -> None:
        purpose = SCOPE_PURPOSES.get(required, "this operation needs it")
        message = (
            f"This API key lacks the '{required}' scope; {purpose}. Ask the program's staff for a key with "
            f"the '{required}' scope (this key has: {', '.join(granted) or 'no scope'})."
        )
        super().__init__(message, code="insufficient_scope")
        self.details = {"required_scope": str(required), "key_scopes": list(granted)}


def required_scope(request: Request, view: Any) -> str:
    """`read` for safe methods, else the view's `write_scope` (default `write`)."""
    if request.method in SAFE_METHODS:
        return Scope.READ
    return getattr(view, "write_scope", Scope.WRITE)


class HasProgramAPIKeyScope(BasePermission):
    """A valid program key (else 401: no authenticator succeeded) with the scope the request
    needs (else 403 `insufficient_scope`, naming the scope)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ProgramAPIKey):
            return False
        scope = required_scope(request, view)
        if not api_key.has_scope(scope):
            raise InsufficientScope(scope, api_key.scopes)
        return True


def api_program(request: Request) -> Program:
    """The program of the request's API key: the only program the request may touch."""
    return request.auth.program


def key_can_read(request: Request) -> bool:
    """Whether the request's key may see member data (the `read` scope). Write operations
    answer with a member's data (balance, profile) only when it may (docs/api.md)."""
    api_key = getattr(request, "auth", None)
    return isinstance(api_key, ProgramAPIKey) and api_key.has_scope(Scope.READ)
