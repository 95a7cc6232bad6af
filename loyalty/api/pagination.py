"""Cursor pagination of every list operation (docs/api.md, "Pagination").

Guarantees: a list answers `{"results": [...], "next": url|null}`, `limit` items at most (50 by
default, 200 at most), in a stable order (newest first unless the operation says otherwise);
a page is one index range scan however deep it lies (no OFFSET over the whole table). A cursor
is opaque: a tampered, forged or garbled one is a 400 `invalid` naming `cursor`, never a 404 or
a 500 (its position is checked against the ordering column's type and range before any query).
"""

from __future__ import annotations

from base64 import b64decode
from typing import Any
from urllib.parse import parse_qs

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.db.models import Model, QuerySet
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

INVALID_CURSOR = "Invalid cursor: use the `next` link of a previous page as it is."


class ApiCursorPagination(CursorPagination):
    """`{"results": [...], "next": url|null}` ordered by descending id (newest first), `limit`
    up to 200. A subclass may order by another unique column (`ordering`)."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    ordering = "-id"

    _model: type[Model] | None = None

    def paginate_queryset(self, queryset: QuerySet[Any], request: Request, view: Any = None) -> list[Any] | None:
        self._model = queryset.model  # decode_cursor checks the position against its column
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Any:
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is not None and not _known_tokens(encoded):
            raise _invalid_cursor()
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound as exc:  # DRF's answer to a cursor it cannot decode
            raise _invalid_cursor() from exc
        if cursor is not None and cursor.position is not None:
            self._check_position(cursor.position)
        return cursor

    def _check_position(self, position: str) -> None:
        """A decoded cursor's position must be a value of the first ordering column: else the
        query would fail (a 500) or compare nonsense."""
        if self._model is None or "\x00" in position:
            raise _invalid_cursor()
        field = self._model._meta.get_field(self.ordering[0].lstrip("-"))
        try:
            value = field.to_python(position)
        except (DjangoValidationError, TypeError, ValueError) as exc:
            raise _invalid_cursor() from exc
        low, high = connection.ops.integer_field_ranges.get(field.get_internal_type(), (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            raise _invalid_cursor()

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


def _known_tokens(encoded: str) -> bool:
    """Whether a cursor decodes to DRF's tokens only (offset `o`, reverse `r`, position `p`),
    at least one: DRF would read anything else as the first page."""
    try:
        querystring = b64decode(encoded.encode("ascii")).decode("ascii")
    except (ValueError, UnicodeError):
        return False
    tokens = parse_qs(querystring, keep_blank_values=True)
    return bool(tokens) and set(tokens) <= {"o", "r", "p"}


def _invalid_cursor() -> exceptions.ValidationError:
    return exceptions.ValidationError({CursorPagination.cursor_query_param: [INVALID_CURSOR]})
