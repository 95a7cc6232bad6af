"""API keys: creating, changing and revoking a program's keys (docs/api.md, "Keys and scopes").

Guarantees: a key is saved validated, its scopes without duplicates in a fixed order (read,
write, adjust), and only the SHA-512 of its secret is stored: the full key is returned once,
by `api_key_create`, and can never be read again. Revoking is irreversible; the next request
with a revoked key is a 401 (in a web process other than the one that revoked it, within
`API_KEY_CACHE_SECONDS`: loyalty/api/auth.py). The admin and `manage.py create_api_key` call these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from loyalty.models import Program, ProgramAPIKey, default_api_key_scopes
from loyalty.signals import api_keys_changed

Scope = ProgramAPIKey.Scope
_SCOPE_ORDER = {scope.value: position for position, scope in enumerate(Scope)}


def _ordered(scopes: Iterable[str]) -> list[str]:
    return sorted(set(scopes), key=lambda scope: _SCOPE_ORDER.get(scope, len(_SCOPE_ORDER)))


@transaction.atomic
def api_key_create(
    *,
    program: Program,
    name: str,
    scopes: Iterable[str] | None = None,
    expiry_date: dt.datetime | None = None,
) -> tuple[ProgramAPIKey, str]:
    """A new key of `program` and its full secret (`<prefix>.<secret>`), to show once.
    `scopes` defaults to read and write (adjust must be asked for). Raises Django's
    ValidationError (nothing saved) for an unknown scope, a name too long, and the like."""
    api_key = ProgramAPIKey(
        program=program,
        name=name,
        scopes=_ordered(default_api_key_scopes() if scopes is None else scopes),
        expiry_date=expiry_date,
    )
    secret = ProgramAPIKey.objects.assign_key(api_key)
    api_key.full_clean(validate_unique=False)  # Django's ValidationError: the admin form and the command show it
    api_key.save(force_insert=True)
    return api_key, secret


@transaction.atomic
def api_key_update(*, api_key: ProgramAPIKey, **fields: Any) -> ProgramAPIKey:
    """Change a key's name, scopes or expiry (its program and secret never change; a revoked
    key keeps its scopes). Setting `revoked=True` revokes it like `api_key_revoke`."""
    allowed = {"name", "scopes", "expiry_date", "revoked"}
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"api_key_update cannot change {', '.join(sorted(unknown))}.")
    was_revoked = ProgramAPIKey.objects.filter(pk=api_key.pk, revoked=True).exists()
    if was_revoked:
        fields.pop("scopes", None)
        fields["revoked"] = True  # irreversible
    if "scopes" in fields:
        fields["scopes"] = _ordered(fields["scopes"])
    for name, value in fields.items():
        setattr(api_key, name, value)
    api_key.full_clean(validate_unique=False)
    api_key.save(update_fields=list(fields) or None)
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key_ids: Iterable[str]) -> int:
    """Revoke the keys with these ids (irreversible); how many were revoked now (keys revoked
    before are not counted)."""
    revoked = ProgramAPIKey.objects.filter(pk__in=list(api_key_ids), revoked=False).update(revoked=True)
    api_keys_changed.send(sender=ProgramAPIKey)  # `update` sends no post_save
    return revoked
