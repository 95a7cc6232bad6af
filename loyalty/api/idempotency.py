"""Idempotency of POSTs over HTTP (docs/api.md, "Idempotency").

Guarantees: a POST with an `Idempotency-Key` runs at most once per (program, key); a retry with
the same request gets the first response (status and body, `Idempotent-Replayed: true`) and
changes nothing; the same key with another request is 409 `idempotency_conflict`. Operations
marked `idempotency_required` refuse a POST without the header (400). The record and the
operation's effects commit together or not at all. See `_run_idempotently`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from loyalty import errors
from loyalty.models import IdempotencyRecord, Program

from .auth import api_program
from .errors import LenientEncoder, domain_error_status, error_body

if TYPE_CHECKING:
    from .views import ProgramApi


class InvalidIdempotencyKey(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_idempotency_key"
    default_detail = "The Idempotency-Key header must be 1 to 255 printable ASCII characters."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.details = {"Idempotency-Key": [str(self.detail)]}


class IdempotencyKeyRequired(InvalidIdempotencyKey):
    default_code = "idempotency_key_required"
    default_detail = "This endpoint needs an Idempotency-Key header (1 to 255 printable ASCII characters)."


IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_REPLAYED_HEADER = "Idempotent-Replayed"
HTTP_KEY_NAMESPACE = "http:"


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key (1 to 255 printable ASCII characters, else 400), or None.
    Views pass it unchanged to the ledger services (`idempotency_key=`)."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(" " <= ch <= "~" for ch in key):
        raise InvalidIdempotencyKey()
    return key


def _record_key(key: str) -> str:
    """The HTTP layer's row key: its own namespace beside the ledger's raw keys (max 255)."""
    if len(key) <= 255 - len(HTTP_KEY_NAMESPACE):
        return HTTP_KEY_NAMESPACE + key
    return HTTP_KEY_NAMESPACE + "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _request_fingerprint(request: Request) -> str:
    """What makes two requests "the same": method, path with query and the parsed body (key
    order and whitespace do not matter). Parsing here turns malformed JSON into a 400 before
    anything is recorded."""
    canonical = json.dumps(
        {"method": request.method, "path": request.get_full_path(), "body": request.data},
        sort_keys=True,
        separators=(",", ":"),
        cls=LenientEncoder,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


_CLAIM_SQL = (
    f"INSERT INTO {IdempotencyRecord._meta.db_table} "
    "(program_id, key, operation, request_hash, entry_ids, result, created_at) "
    "VALUES (%s, %s, %s, %s, '[]'::jsonb, '{}'::jsonb, %s) "
    "ON CONFLICT (program_id, key) DO NOTHING RETURNING id"
)


def _claim(*, program: Program, record_key: str, operation: str, request_hash: str) -> int | None:
    """Insert the request's record; its id, or None when the key exists (committed).

    A concurrent request with the same key blocks on the unique index until the first
    transaction ends: then it finds the committed record (-> replay) or, if the first rolled
    back, inserts its own."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [program.pk, record_key, operation[:60], request_hash, timezone.now()])
        row = cursor.fetchone()
    return row[0] if row else None


def _replay(*, program: Program, record_key: str, key: str, request_hash: str) -> Response:
    record = IdempotencyRecord.objects.get(program=program, key=record_key)
    if record.request_hash != request_hash or record.response_status is None:
        raise errors.IdempotencyConflict(
            "This Idempotency-Key was already used with a different request.",
            idempotency_key=key,
            first_used_at=record.created_at,
        )
    return Response(record.response_body, status=record.response_status, headers={IDEMPOTENCY_REPLAYED_HEADER: "true"})


_STORE_SQL = (
    f"UPDATE {IdempotencyRecord._meta.db_table} SET response_status = %s, response_body = %s::jsonb WHERE id = %s"
)


def _store_response(record_id: int, response: Response) -> None:
    """The response's status and body (as the API renders it) on the record: one statement,
    the rendered JSON sent as it is (no parse and re-encode)."""
    data = response.data
    body = None if data is None else JSONRenderer().render(data).decode()
    with connection.cursor() as cursor:
        cursor.execute(_STORE_SQL, [response.status_code, body, record_id])


def _run_idempotently(view: ProgramApi, request: Request, handler: Callable[[], Response]) -> Response:
    """Run a POST at most once per (program, Idempotency-Key); a retry gets the first response.

    Design. One transaction holds the whole request: (1) insert the HTTP record
    `http:<key>` (`IdempotencyRecord`, unique per program) first, (2) run the view — its one
    service call joins this transaction (services use plain `atomic()`, never `durable=True`,
    so that they compose), (3) store the response's status and body on the record, commit.
    Everything commits together or not at all: a crash before the commit leaves no record and
    no effect (the retry runs afresh), after it the retry finds the record. Concurrent
    requests with one key are serialised by the unique index (the second waits, then
    replays). Same key, different method/path/body: 409 `idempotency_conflict`.

    The ledger services keep their own idempotency (rule 4, `PostResult.replayed`): views pass
    them the *raw* key, so ledger rows never clash with the HTTP rows (`http:` namespace), and
    a ledger posting stays exactly-once even when reached outside HTTP (admin, import, tasks).

    No savepoint around the view: a domain refusal (a `LoyaltyError`) rolls the whole
    transaction back, the record with it, and the refusal is then recorded in a transaction of
    its own (`_record_refusal`). So a service may find a refusal after writing (it raises and
    everything is undone), and a service the view calls may join this transaction instead of
    opening a savepoint (`join_caller=`, loyalty/services/transactions.py). A request with the
    same key arriving in that short gap runs afresh; its response becomes the key's.

    What is stored: 2xx responses and the domain's refusals (404/409/422 from a
    `LoyaltyError` raised by the service; nothing it wrote remains) — docs/api.md's "the
    first response". Not stored: malformed input (400: nothing ran; the client fixes the body and
    may reuse the key), 5xx and any unexpected error (the transaction rolls back)."""
    key = idempotency_key(request)
    if key is None:
        if view.idempotency_required:
            raise IdempotencyKeyRequired()
        return handler()
    program = api_program(request)
    request_hash = _request_fingerprint(request)
    record_key = _record_key(key)
    try:
        with transaction.atomic():
            record_id = _claim(
                program=program, record_key=record_key, operation=type(view).__name__, request_hash=request_hash
            )
            if record_id is None:
                return _replay(program=program, record_key=record_key, key=key, request_hash=request_hash)
            # No savepoint around the view (two statements): a refusal rolls the whole
            # transaction back, record included, and is recorded afresh below.
            try:
                response = handler()
            except errors.LoyaltyError as exc:
                if isinstance(exc, errors.InvalidInput):
                    raise
                response = Response(error_body(exc.code, exc.message, exc.details), status=domain_error_status(exc))
                response.exception = True
                raise _Refused(response) from exc
            if not 200 <= response.status_code < 300:
                transaction.set_rollback(True)
                return response
            _store_response(record_id, response)
    except _Refused as refused:
        return _record_refusal(
            program=program,
            record_key=record_key,
            key=key,
            operation=type(view).__name__,
            request_hash=request_hash,
            response=refused.response,
        )
    return response


class _Refused(Exception):
    """A domain refusal leaving the request's transaction (rolled back) with its response."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def _record_refusal(
    *, program: Program, record_key: str, key: str, operation: str, request_hash: str, response: Response
) -> Response:
    """Store a refusal as the key's first response, in a transaction of its own (the request's
    was rolled back: nothing the view wrote remains). A concurrent request with the same key
    may have claimed it meanwhile: its stored response is then the key's, and is returned."""
    with transaction.atomic():
        record_id = _claim(program=program, record_key=record_key, operation=operation, request_hash=request_hash)
        if record_id is None:
            return _replay(program=program, record_key=record_key, key=key, request_hash=request_hash)
        _store_response(record_id, response)
    return response


def _idempotent(post: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(post)
    def wrapper(self: ProgramApi, request: Request, *args: Any, **kwargs: Any) -> Response:
        return _run_idempotently(self, request, lambda: post(self, request, *args, **kwargs))

    wrapper.idempotent = True  # type: ignore[attr-defined]
    return wrapper
