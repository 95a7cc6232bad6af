"""Idempotency keys (rule 4 of the ledger, docs/ledger.md): one store, the table
`loyalty_idempotencyrecord`, unique per (program, key).

A posting records its key in the same statement as its entries (loyalty.services.posting);
other writes (card batches, redemptions, activities) claim a key in their own transaction
with `idempotency_key_claim` and store their result with `idempotency_key_settle`. The same key
with the same request replays the first result; with another request it is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone

from loyalty import errors
from loyalty.models import IdempotencyRecord, Program

IDEM = IdempotencyRecord._meta.db_table


def _canonical(value: Any) -> str:
    """One spelling per value, so that equal requests hash alike: 100 == 100.00, and a moment
    is the same whatever offset it was written with."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return str(value)


def request_hash_of(operation: str, payload: dict[str, Any]) -> str:
    body = json.dumps({"op": operation, **payload}, sort_keys=True, default=_canonical, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def check_key(key: str | None) -> None:
    if key is None:
        return
    if not isinstance(key, str) or not 1 <= len(key) <= 255 or not key.isprintable():
        raise errors.InvalidInput("An idempotency key is 1 to 255 printable characters.", field="idempotency_key")


def idempotency_key_namespaced(namespace: str, key: str) -> str:
    """`key` in its own namespace of the one store (`"activity:" + key`), so that a use case's
    keys never clash with the ledger's raw keys; a key too long for that is hashed (255 max)."""
    check_key(key)
    prefix = f"{namespace}:"
    if len(key) <= 255 - len(prefix):
        return prefix + key
    return prefix + "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def idempotency_key_claim(
    *,
    program: Program,
    key: str,
    operation: str,
    payload: dict[str, Any],
    now: dt.datetime | None = None,
    request_hash: str | None = None,
    result: dict[str, Any] | None = None,
) -> IdempotencyRecord | None:
    """For writes other than postings (a card batch, ...): claim `key` inside the caller's
    transaction. None: the key is new, go on and then `idempotency_key_settle` the result.
    A record: the key was used by the same request before, replay its `result`. Raises
    `IdempotencyConflict` when it was used by a different request. A concurrent claim of the
    same key waits on the unique index until the first transaction ends. `request_hash`
    replaces the hash of `payload`; `result` is stored at once (no settle needed)."""
    check_key(key)
    request_hash = request_hash or request_hash_of(operation, payload)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {IDEM} (program_id, key, operation, request_hash, entry_ids, result, created_at) "
            "VALUES (%s, %s, %s, %s, '[]', %s::jsonb, %s) ON CONFLICT (program_id, key) DO NOTHING RETURNING id",
            [program.id, key, operation, request_hash, json.dumps(result or {}), now or timezone.now()],
        )
        if cur.fetchone():
            return None
    record = IdempotencyRecord.objects.get(program=program, key=key)
    if record.request_hash != request_hash:
        raise errors.IdempotencyConflict(
            "This idempotency key was used with a different request.", idempotency_key=key, operation=record.operation
        )
    return record


def idempotency_key_settle(*, program: Program, key: str, result: dict[str, Any]) -> None:
    """Store what the request claimed with `idempotency_key_claim` produced (same transaction)."""
    IdempotencyRecord.objects.filter(program=program, key=key).update(result=result)
