"""Who may call the API, and what for: the API key and its scopes (docs/api.md, "Keys and scopes").

Guarantees: a request with no key, or a key that is unknown, wrong, revoked, expired or of an
inactive program, is a 401 with `WWW-Authenticate: Api-Key`; a valid key without the scope the
operation needs is a 403 `insufficient_scope` whose message names the scope in words and whose
details carry it (`required_scope`). `request.auth` is the `ProgramAPIKey`, and its program is
the only program the request can reach.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework_api_key.permissions import KeyParser

from loyalty.models import Program, ProgramAPIKey

Scope = ProgramAPIKey.Scope

# What each scope opens, in the words of a 403's message.
SCOPE_PURPOSES = {
    Scope.READ: "reading members, cards, ledgers, rewards and tiers needs it, and so does seeing a member's "
    "data in the answer of a write",
    Scope.WRITE: "reporting activities, enrolling and changing members, assigning cards and redeeming need it",
    Scope.ADJUST: "manual point adjustments need it",
}


class ProgramAPIKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <prefix>.<secret>` -> (AnonymousUser, the `ProgramAPIKey`).

    No header (or another scheme): None, so the permission turns it into 401. A key that is
    unknown, wrong, revoked or expired, or whose program is inactive: 401 at once. Revoked and
    expired are only told to a caller who holds the right secret. Queries: 1 (key by its
    unique prefix, program joined); the hash check is one SHA-512.
    """

    keyword = KeyParser.keyword
    key_parser = KeyParser()
    _prefix = re.compile(r"[A-Za-z0-9]{8}")  # the library's `get_random_string(8)`

    def authenticate(self, request: Request) -> tuple[Any, ProgramAPIKey] | None:
        key = self.key_parser.get(request)
        if key is None:
            return None
        prefix, dot, _secret = key.strip().partition(".")
        api_key = None
        if dot and self._prefix.fullmatch(prefix):
            api_key = ProgramAPIKey.objects.select_related("program").filter(prefix=prefix).first()
        if api_key is None or not api_key.is_valid(key.strip()):
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if api_key.revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.", code="api_key_expired")
        if not api_key.program.is_active:
            raise exceptions.AuthenticationFailed("This API key's program is not active.", code="program_inactive")
        # No Django user stands behind a key: services get no `actor` from the API.
        return AnonymousUser(), api_key

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
