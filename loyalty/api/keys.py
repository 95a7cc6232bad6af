"""API-key writes (temporary home until they move into the services)."""

from __future__ import annotations

from django.db.models import QuerySet

from loyalty.models import ProgramAPIKey

Scope = ProgramAPIKey.Scope


def api_key_issue(*, api_key: ProgramAPIKey) -> str:
    """Give an unsaved key its secret, validate and save it; return the full key
    (`<prefix>.<secret>`). Only its SHA-512 is stored: show the return value once."""
    secret = ProgramAPIKey.objects.assign_key(api_key)
    order = {scope.value: position for position, scope in enumerate(Scope)}
    api_key.scopes = sorted(set(api_key.scopes), key=lambda scope: order.get(scope, len(order)))
    api_key.full_clean(validate_unique=False)
    api_key.save(force_insert=True)
    return secret


def api_keys_revoke(*, keys: QuerySet[ProgramAPIKey]) -> int:
    """Revoke keys (irreversible); the next request with one gets 401. Returns how many."""
    return keys.filter(revoked=False).update(revoked=True)
