"""The REST API's machinery, one concern per module (docs/api.md is the contract in prose):

- `auth`: the API key (401) and its scopes (403 naming the scope);
- `throttling`: the per-key rate limit (429);
- `errors`: the one error format, `{"error": {"code", "message", "details"}}`;
- `parsing`: what a body may be (size 413, nesting, unknown fields, the `occurred_at` window)
  and `parse_input`;
- `idempotency`: POSTs run at most once per `Idempotency-Key`;
- `pagination`: cursor pages, a bad cursor is a 400;
- `references`: naming a member (`member_id` | `external_id` | `card_number`);
- `member_data`: member data in answers only for keys with the `read` scope;
- `views`: `ProgramApi`, the base of every operation, which puts the above together;
- `schema`: the OpenAPI conventions (drf-spectacular);
- `points`: loyalty's own endpoints (adjustments, transfers).

The apps import from the modules. The names below are re-exported for code written against
the single module this package replaced.
"""

from .auth import HasProgramAPIKeyScope, InsufficientScope, ProgramAPIKeyAuthentication, Scope, api_program
from .errors import ErrorSerializer, api_exception_handler, error_body, error_responses, page_not_found, server_error
from .idempotency import IDEMPOTENCY_HEADER, idempotency_key
from .member_data import BalanceSerializer, ReadScopedSerializer
from .pagination import ApiCursorPagination
from .parsing import OccurredAtField, parse_input
from .references import MemberReferenceSerializer, member_from_reference
from .throttling import APIKeyRateThrottle
from .views import ProgramApi

__all__ = [
    "IDEMPOTENCY_HEADER",
    "APIKeyRateThrottle",
    "ApiCursorPagination",
    "BalanceSerializer",
    "ErrorSerializer",
    "HasProgramAPIKeyScope",
    "InsufficientScope",
    "MemberReferenceSerializer",
    "OccurredAtField",
    "ProgramAPIKeyAuthentication",
    "ProgramApi",
    "ReadScopedSerializer",
    "Scope",
    "api_exception_handler",
    "api_program",
    "error_body",
    "error_responses",
    "idempotency_key",
    "member_from_reference",
    "page_not_found",
    "parse_input",
    "server_error",
]
