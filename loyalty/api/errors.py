"""The API's one error format: every refusal is `{"error": {"code", "message", "details"}}`
(docs/api.md, "Errors").

Guarantees: DRF's errors, Django's (404, permission, model validation, a body over Django's
upload limit) and the domain's (`loyalty.errors` and the apps' subclasses, by class: NotFound
404, Conflict 409, InvalidInput 400, any other 422) all render in that format, and the
transaction of the request is rolled back: a refused request writes nothing. An unexpected
error is logged and answered with a 500 in the same format. `page_not_found`/`server_error`
do the same for Django's own 404/500 under /api/. `error_responses` documents the format in
the OpenAPI schema.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults as django_defaults
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import set_rollback

from loyalty import errors

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    """413: the body is larger than the API accepts (`API_MAX_BODY_BYTES`, docs/api.md "Limits")."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than the API accepts ({limit} bytes at most).")
        self.details = {"max_bytes": limit}


def domain_error_status(exc: errors.LoyaltyError) -> int:
    """docs/api.md's status of a domain error, by class."""
    if isinstance(exc, errors.NotFound):
        return status.HTTP_404_NOT_FOUND
    if isinstance(exc, errors.Conflict):
        return status.HTTP_409_CONFLICT
    if isinstance(exc, errors.InvalidInput):
        return status.HTTP_400_BAD_REQUEST
    return status.HTTP_422_UNPROCESSABLE_ENTITY


class LenientEncoder(JSONEncoder):
    """DRF's encoder (datetime, UUID...; Decimal as a string) falling back to `str` for anything else, so
    error details can never break the error response."""

    def default(self, obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return str(obj)  # money is a decimal string in the API (docs/api.md), never a float
        try:
            return super().default(obj)
        except TypeError:
            return str(obj)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, cls=LenientEncoder))


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
    messages; malformed or too deeply nested JSON: "parse_error"), 401 (with
    `WWW-Authenticate: Api-Key`), 403, 404, 405, 409, 413 (`payload_too_large`), 415, 422
    (domain refusals, with the error's own code), 429 (with `Retry-After`). Anything else is
    a bug: logged, and a 500 envelope (re-raised when DEBUG, for the technical page)."""
    if isinstance(exc, errors.LoyaltyError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.details), status=domain_error_status(exc))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        # Django's own limit (DATA_UPLOAD_MAX_MEMORY_SIZE), met when it is below the API's.
        exc = PayloadTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
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
    if request.path.startswith("/admin/"):  # a staff page: the admin's own 404 (loyalty/admin/errors.py)
        from loyalty.admin import errors as admin_errors

        return admin_errors.page_not_found(request, exception)
    return django_defaults.page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler400` (a request Django refuses before any view, e.g. a Host header not in
    ALLOWED_HOSTS): the JSON envelope under /api/, Django's page elsewhere."""
    if _is_api_path(request):
        return JsonResponse(error_body("bad_request", "The request could not be read."), status=400)
    return django_defaults.bad_request(request, exception)


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
    "JSON nested too deeply, a bad pagination cursor, or a malformed / missing Idempotency-Key.",
    401: "No API key, or an invalid, revoked or expired one (`WWW-Authenticate: Api-Key`).",
    403: "The API key lacks the scope this operation needs (`insufficient_scope`; the message names it, "
    "`details.required_scope` holds it).",
    404: "Not found in the key's program (another program's data is never visible).",
    409: "Conflict: the Idempotency-Key was used with a different request (`idempotency_conflict`), or a duplicate.",
    413: "The request body is larger than the API accepts (`payload_too_large`; `details.max_bytes`).",
    422: "A business rule refused the request; `code` says which.",
    429: "Rate limit of the API key reached; retry after `Retry-After` seconds.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """`@extend_schema(responses={200: X, **error_responses(404, 422)})`: the error envelope
    documented for each status (401, 403 and 429 are added to every operation by
    `ApiAutoSchema`, 400, 409 and 413 to every POST)."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS.get(code, "")) for code in codes}
