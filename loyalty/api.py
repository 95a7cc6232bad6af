"""The REST API's shared machinery (API.md): every app's `api.py` builds on it.

- **Authentication**: `Authorization: Api-Key <key>` (djangorestframework-api-key's parser and
  hashing). The library ships a *permission*, which DRF answers with 403 and which leaves
  `request.auth` empty; `ProgramAPIKeyAuthentication` is the authentication class API.md needs:
  401 with `WWW-Authenticate: Api-Key` for a missing, unknown, revoked or expired key,
  `request.auth` = the `ProgramAPIKey`, `request.program` = its program.
- **Scopes**: `HasProgramAPIKeyScope` (the default permission) wants `read` for GET/HEAD/OPTIONS
  and the view's `write_scope` (`write` unless the view says `adjust`) for everything else:
  403 `insufficient_scope`. Data of another program is never reachable: views look up
  everything through `request.program` (`ProgramApi.program`), so it is a 404.
- **Errors**: `api_exception_handler` renders every error as
  `{"error": {"code", "message", "details"}}`; domain errors (`loyalty.errors` and the apps'
  subclasses) map by class: NotFound 404, Conflict 409, InvalidInput 400, any other 422.
  `page_not_found` / `server_error` do the same for Django's own 404/500 under /api/.
- **Idempotency** of POSTs (`ProgramApi`, `idempotency_required`), see `_run_idempotently`.
- **Rate limits** per key (`APIKeyRateThrottle`), **cursor pagination** (`ApiCursorPagination`),
  the **member reference** (`MemberReferenceSerializer`, `member_from_reference`) and the
  **OpenAPI** pieces (`ApiAutoSchema`, the `ApiKeyAuth` scheme, `ErrorSerializer`).

A view of the API is one class per operation (STYLE.md rule 11)::

    class CardAssignApi(ProgramApi):
        idempotency_required = False          # True for the endpoints API.md marks (I)

        class InputSerializer(MemberReferenceSerializer): ...

        @extend_schema(request=InputSerializer, responses={200: CardSerializer, **error_responses(404, 422)})
        def post(self, request, number):
            data = parse_input(self.InputSerializer, request)
            ...  # one service call with program=self.program
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from functools import wraps
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views import defaults as django_defaults
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView, set_rollback
from rest_framework_api_key.permissions import KeyParser
from stdnum import luhn

from . import errors
from .models import IdempotencyRecord, Member, Program, ProgramAPIKey

logger = logging.getLogger(__name__)

Scope = ProgramAPIKey.Scope

# --------------------------------------------------------------------------------------------
# Authentication and scopes


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
    default_code = "insufficient_scope"

    def __init__(self, required: str, granted: list[str]) -> None:
        super().__init__(f"This API key does not have the {required!r} scope.", code="insufficient_scope")
        self.details = {"required_scope": required, "key_scopes": list(granted)}


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


class APIKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (not per IP: a POS fleet shares one address). The rate is
    `DEFAULT_THROTTLE_RATES[view.throttle_scope or "api_key"]`, read per request, so settings
    overrides apply at once (DRF's throttles bind the rates at import). Requests without a
    valid key are never counted (they are refused before)."""

    default_scope = "api_key"

    def __init__(self) -> None:  # the rate depends on the view: resolved in allow_request
        pass

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = getattr(view, "throttle_scope", None) or self.default_scope
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self) -> str | None:
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        if self.scope not in rates:
            raise ImproperlyConfigured(f"No throttle rate set for the {self.scope!r} scope.")
        return rates[self.scope]

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ProgramAPIKey):
            return None
        return f"throttle_{self.scope}_{request.auth.prefix}"

    def wait(self) -> float | None:
        wait = super().wait()
        return None if wait is None else max(1, math.ceil(wait))


# --------------------------------------------------------------------------------------------
# Errors


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


def domain_error_status(exc: errors.LoyaltyError) -> int:
    """API.md's status of a domain error, by class."""
    if isinstance(exc, errors.NotFound):
        return status.HTTP_404_NOT_FOUND
    if isinstance(exc, errors.Conflict):
        return status.HTTP_409_CONFLICT
    if isinstance(exc, errors.InvalidInput):
        return status.HTTP_400_BAD_REQUEST
    return status.HTTP_422_UNPROCESSABLE_ENTITY


class _LenientEncoder(JSONEncoder):
    """DRF's encoder (datetime, UUID...; Decimal as a string) falling back to `str` for anything else, so
    error details can never break the error response."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return str(obj)  # money is a decimal string in the API (API.md), never a float
        try:
            return super().default(obj)
        except TypeError:
            return str(obj)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=_LenientEncoder))


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": _json_safe(dict(details or {}))}}


def _validation_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return dict(detail)
    return {api_settings.NON_FIELD_ERRORS_KEY: detail if isinstance(detail, list) else [detail]}


def _api_exception_response(exc: exceptions.APIException) -> Response:
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    details: dict[str, Any] = dict(getattr(exc, "details", None) or {})
    if isinstance(exc, exceptions.ValidationError):
        details = _validation_details(exc.detail)
        fields = ", ".join(str(name) for name in details)
        return Response(
            error_body("invalid", f"Invalid input ({fields}).", details), status=exc.status_code, headers=headers
        )
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        retry_after = max(1, math.ceil(exc.wait))
        headers["Retry-After"] = str(retry_after)
        details.setdefault("retry_after", retry_after)
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    if isinstance(exc.detail, list | dict):
        details.setdefault("errors", exc.detail)
        message = str(exc.default_detail)
    else:
        message = str(exc.detail)
    return Response(error_body(str(code), message, details), status=exc.status_code, headers=headers)


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error of the API as `{"error": {code, message, details}}`.

    400 invalid input (DRF validation: `code` "invalid", `details` maps each field to its
    messages; malformed JSON: "parse_error"), 401 (with `WWW-Authenticate: Api-Key`), 403,
    404, 405, 409, 415, 422 (domain refusals, with the error's own code), 429 (with
    `Retry-After`). Anything else is a bug: logged, and a 500 envelope (re-raised when DEBUG,
    for the technical page)."""
    if isinstance(exc, errors.LoyaltyError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.details), status=domain_error_status(exc))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        # A model's full_clean() reached the view: still bad input, never a 500.
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        return _api_exception_response(exc)
    if settings.DEBUG:
        return None
    request = context.get("request")
    logger.error(
        "Unhandled error in the API: %s %s",
        getattr(request, "method", "?"),
        getattr(request, "path", "?"),
        exc_info=exc,
    )
    set_rollback()
    return Response(
        error_body("server_error", "An unexpected error occurred. It has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _is_api_path(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: the JSON envelope under /api/ (unknown path), Django's page elsewhere."""
    if _is_api_path(request):
        return JsonResponse(error_body("not_found", "No such endpoint.", {"path": request.path}), status=404)
    return django_defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: the JSON envelope under /api/, Django's page elsewhere."""
    if _is_api_path(request):
        return JsonResponse(error_body("server_error", "An unexpected error occurred. It has been logged."), status=500)
    return django_defaults.server_error(request)


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid`, `card_not_assignable`.")
    message = serializers.CharField(help_text="Human-readable explanation.")
    details = serializers.DictField(
        help_text="Context: for 400 `invalid`, each field name with its messages; otherwise the error's data."
    )


class ErrorSerializer(serializers.Serializer):
    """The one error format of the API."""

    error = ErrorBodySerializer()


ERROR_DESCRIPTIONS = {
    400: "Invalid input: `details` names the fields (`code` `invalid`), malformed JSON (`parse_error`), "
    "or a malformed / missing Idempotency-Key.",
    401: "No API key, or an invalid, revoked or expired one (`WWW-Authenticate: Api-Key`).",
    403: "The API key lacks the scope this operation needs (`insufficient_scope`).",
    404: "Not found in the key's program (another program's data is never visible).",
    409: "Conflict: the Idempotency-Key was used with a different request (`idempotency_conflict`), or a duplicate.",
    422: "A business rule refused the request; `code` says which.",
    429: "Rate limit of the API key reached; retry after `Retry-After` seconds.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """`@extend_schema(responses={200: X, **error_responses(404, 422)})`: the error envelope
    documented for each status (401, 403 and 429 are added to every operation by
    `ApiAutoSchema`, 400 and 409 to every POST)."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS.get(code, "")) for code in codes}


def parse_input(serializer_class: type[serializers.Serializer], request: Request, **context: Any) -> dict[str, Any]:
    """The validated body (400 `invalid` naming the fields otherwise)."""
    serializer = serializer_class(data=request.data, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# --------------------------------------------------------------------------------------------
# Pagination


class ApiCursorPagination(CursorPagination):
    """`{"results": [...], "next": url|null}` ordered by descending id (newest first), `limit`
    up to 200. A cursor is opaque and stable under inserts (no OFFSET scans at 10^8 rows). A
    tampered cursor is bad input: 400, not DRF's 404."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    ordering = "-id"

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:
            raise exceptions.ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from exc

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "nullable": True, "format": "uri"},
            },
        }


# --------------------------------------------------------------------------------------------
# Idempotency


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
        cls=_LenientEncoder,
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


def _rendered(data: Any) -> Any:
    return None if data is None else json.loads(JSONRenderer().render(data))


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

    What is stored: 2xx responses and the domain's refusals (404/409/422 from a
    `LoyaltyError` raised by the service, which wrote nothing) — API.md's "the first
    response". Not stored: malformed input (400: nothing ran; the client fixes the body and
    may reuse the key), 5xx and any unexpected error (the transaction rolls back)."""
    key = idempotency_key(request)
    if key is None:
        if view.idempotency_required:
            raise IdempotencyKeyRequired()
        return handler()
    program = api_program(request)
    request_hash = _request_fingerprint(request)
    record_key = _record_key(key)
    with transaction.atomic():
        record_id = _claim(
            program=program, record_key=record_key, operation=type(view).__name__, request_hash=request_hash
        )
        if record_id is None:
            return _replay(program=program, record_key=record_key, key=key, request_hash=request_hash)
        try:
            with transaction.atomic():  # a savepoint: a refusal's partial work is undone, the record stays
                response = handler()
        except errors.LoyaltyError as exc:
            if isinstance(exc, errors.InvalidInput):
                raise
            response = Response(error_body(exc.code, exc.message, exc.details), status=domain_error_status(exc))
            response.exception = True
        if not (200 <= response.status_code < 300 or getattr(response, "exception", False)):
            transaction.set_rollback(True)
            return response
        IdempotencyRecord.objects.filter(pk=record_id).update(
            response_status=response.status_code, response_body=_rendered(response.data)
        )
    return response


def _idempotent(post: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(post)
    def wrapper(self: ProgramApi, request: Request, *args: Any, **kwargs: Any) -> Response:
        return _run_idempotently(self, request, lambda: post(self, request, *args, **kwargs))

    wrapper.idempotent = True  # type: ignore[attr-defined]
    return wrapper


# --------------------------------------------------------------------------------------------
# The base view


class ProgramApi(APIView):
    """Base of every /api/v1/ operation: a program's API key (401), the scope (403), the rate
    limit (429), and `self.program` to filter every look-up by. List operations return
    `self.paginated_response(queryset, OutputSerializer)`.

    Every `post` of a subclass is wrapped by the HTTP idempotency layer: the Idempotency-Key
    header is accepted everywhere, and required where `idempotency_required = True` (the
    endpoints API.md marks (I)). `write_scope = Scope.ADJUST` for adjustments."""

    authentication_classes = [ProgramAPIKeyAuthentication]
    permission_classes = [HasProgramAPIKeyScope]
    throttle_classes = [APIKeyRateThrottle]
    pagination_class = ApiCursorPagination
    idempotency_required: ClassVar[bool] = False
    write_scope: ClassVar[str] = Scope.WRITE

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        post = cls.__dict__.get("post")
        if post is not None and not getattr(post, "idempotent", False):
            cls.post = _idempotent(post)  # type: ignore[attr-defined]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication, scope, throttle
        if isinstance(request.auth, ProgramAPIKey):
            request.program = request.auth.program

    @property
    def program(self) -> Program:
        return api_program(self.request)

    def paginated_response(self, queryset: QuerySet[Any], serializer_class: type[serializers.Serializer]) -> Response:
        """A page of `queryset` (already filtered by `self.program`) as `{"results", "next"}`."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


# --------------------------------------------------------------------------------------------
# Shared representations and the member reference


# A member's cached balances; nest it with `source="*"` on a member.
class BalanceSerializer(serializers.Serializer):
    """The member's points (integers)."""

    available = serializers.IntegerField(help_text="Spendable now (negative while the member owes points).")
    pending = serializers.IntegerField(help_text="Earned, still in the return window.")
    lifetime_earned = serializers.IntegerField()
    redeemed = serializers.IntegerField()
    expired = serializers.IntegerField()


MEMBER_REFERENCE_FIELDS = ("member_id", "external_id", "card_number")
_BIGINT_MAX = 2**63 - 1


# API.md's member reference. Subclass it for a flat body, or nest it (`from`, `to`); resolve
# the validated data with `member_from_reference`.
class MemberReferenceSerializer(serializers.Serializer):
    """A member, named by exactly one of `member_id`, `external_id` (the shop's customer id)
    or `card_number` (an active card of the member)."""

    member_id = serializers.IntegerField(required=False, min_value=1, max_value=_BIGINT_MAX)
    external_id = serializers.CharField(required=False, max_length=255, help_text="The shop's customer id.")
    card_number = serializers.CharField(
        required=False, max_length=40, help_text="A card number of the member (spaces and dashes are ignored)."
    )

    def validate_card_number(self, value: str) -> str:
        number = "".join(ch for ch in value if ch not in " -\t")
        if not (number.isdigit() and 8 <= len(number) <= 32 and luhn.is_valid(number)):
            raise serializers.ValidationError("This is not a valid card number (check the digits).")
        return number

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in MEMBER_REFERENCE_FIELDS if attrs.get(name) is not None]
        if len(given) != 1:
            message = "Give exactly one of member_id, external_id or card_number."
            raise serializers.ValidationError({name: [message] for name in (given or MEMBER_REFERENCE_FIELDS)})
        return attrs


def member_from_reference(*, program: Program, reference: Mapping[str, Any]) -> Member:
    """The member of `program` a validated reference names, else `MemberNotFound` (404); a
    member of another program is not found. A card number names its member while the card is
    active (a blocked, void or unassigned card names nobody here; reporting a purchase on an
    unassigned card is the cards app's `member_for_card`). Queries: 1, on an index (pk,
    unique external id, unique card number)."""
    members: QuerySet[Member] = Member.objects.filter(program=program)
    if reference.get("member_id") is not None:
        field, value = "member_id", reference["member_id"]
        members = members.filter(pk=value)
    elif reference.get("external_id") is not None:
        field, value = "external_id", reference["external_id"]
        members = members.filter(external_id=value)
    else:
        field, value = "card_number", reference["card_number"]
        # The reverse relation of cards.Card.member (a lookup, not an import: loyalty stays below cards).
        members = members.filter(cards__number=value, cards__status="active")
    member = members.first()
    if member is None:
        raise errors.MemberNotFound("No member of this program matches the reference.", **{field: value})
    member.program = program
    return member


# --------------------------------------------------------------------------------------------
# API keys (the writes of this module's model: the admin and `create_api_key` call these)


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


# --------------------------------------------------------------------------------------------
# OpenAPI (drf-spectacular)


class ApiKeyAuthScheme(OpenApiAuthenticationExtension):
    """The `ApiKeyAuth` security scheme of the schema (spectacular has no contrib for
    djangorestframework-api-key)."""

    target_class = "loyalty.api.ProgramAPIKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: a key of one program, created in the admin or with "
            "`manage.py create_api_key`, with the scopes `read`, `write`, `adjust`.",
        }


_IDEMPOTENCY_DESCRIPTION = (
    "1 to 255 printable ASCII characters. A retry with the same key and the same body gets the first "
    "response (status and body, header `Idempotent-Replayed: true`) and changes nothing; the same key "
    "with a different request: 409 `idempotency_conflict`."
)
_RESPONSE_HEADERS = [
    OpenApiParameter(
        "Retry-After", int, OpenApiParameter.HEADER, response=[429], description="Seconds to wait before retrying."
    ),
    OpenApiParameter("WWW-Authenticate", str, OpenApiParameter.HEADER, response=[401], description="Always `Api-Key`."),
]


class ApiAutoSchema(AutoSchema):
    """Spectacular's schema with the API's conventions: the Idempotency-Key header on POSTs,
    the error envelope for the statuses every operation can return, component names from
    the nested serializers (`CardAssignApi.InputSerializer` -> `CardAssignRequest`) and
    operation ids from the view (`CardAssignApi` -> `card_assign`)."""

    def _is_program_api(self) -> bool:
        return isinstance(self.view, ProgramApi)

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self._is_program_api():
            if self.method == "POST":
                parameters.append(
                    OpenApiParameter(
                        IDEMPOTENCY_HEADER,
                        str,
                        OpenApiParameter.HEADER,
                        required=self.view.idempotency_required,
                        description=_IDEMPOTENCY_DESCRIPTION,
                    )
                )
            parameters.extend(_RESPONSE_HEADERS)
        return parameters

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if not self._is_program_api():
            return responses
        codes = [401, 403, 429] + ([400, 409] if self.method == "POST" else [])
        for code, response in error_responses(*codes).items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(response, str(code), direction=direction)
        return dict(sorted(responses.items()))

    def get_serializer_name(self, serializer: serializers.Serializer, direction: str) -> str:
        parts = type(serializer).__qualname__.split(".")
        if len(parts) == 1:
            return parts[0]
        inner = [part.removesuffix("Serializer") for part in parts[1:]]
        return parts[0].removesuffix("Api") + "".join(part for part in inner if part not in ("Input", "Output"))

    def get_operation_id(self) -> str:
        if not self._is_program_api():
            return super().get_operation_id()
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(self.view).__name__.removesuffix("Api")).lower()
        handlers = [m for m in self.view.http_method_names if m not in ("options", "head") and hasattr(self.view, m)]
        return name if len(handlers) == 1 else f"{name}_{self.method.lower()}"
