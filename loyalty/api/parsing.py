"""What a request body may be, and how it becomes validated data (docs/api.md, "Limits").

Guarantees, each a refusal before anything is written:
- a body over `API_MAX_BODY_BYTES` (Content-Length) is a 413 `payload_too_large`, before it is
  read (`check_body_size`, called by `ProgramApi.initial`);
- JSON nested deeper than `MAX_JSON_DEPTH` levels (or deep enough to exhaust Python's recursion
  limit) is a 400 `parse_error` (`ApiJSONParser`);
- `parse_input` refuses unknown fields with a 400 `invalid` naming each (nested ones too),
  together with the other invalid fields;
- `OccurredAtField` accepts a moment only within `API_OCCURRED_AT_MAX_AGE_DAYS` before now and
  `API_CLOCK_SKEW_SECONDS` after it.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request

from .errors import PayloadTooLarge

# The API's bodies nest three levels at most (a transfer's `from`, an activity's items); 32
# leaves room and stays far below the recursion limit of anything that walks the data.
MAX_JSON_DEPTH = 32


def max_body_bytes() -> int:
    return int(settings.API_MAX_BODY_BYTES)


def check_body_size(request: Request) -> None:
    """413 when the declared body is larger than the API accepts. Django reads no more than
    Content-Length (a body without it is empty), so the header bounds what is read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > max_body_bytes():
        raise PayloadTooLarge(max_body_bytes())


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether `data` nests deeper than `limit` containers (iterative: no recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class ApiJSONParser(JSONParser):
    """DRF's JSON parser, with a bound on nesting: 400 `parse_error` beyond `MAX_JSON_DEPTH`."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError(self._too_deep()) from exc
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise exceptions.ParseError(self._too_deep())
        return data

    @staticmethod
    def _too_deep() -> str:
        return f"JSON parse error - the body nests deeper than {MAX_JSON_DEPTH} levels."


class InputSerializer(serializers.Serializer):
    """A body's serializer that builds its fields cheaply: DRF deep-copies every declared field
    for every serializer instance (the field is instantiated again from its arguments, with
    its validators); here a plain field is a shallow copy of the declared one, bound afresh,
    and only nested serializers are deep-copied as DRF does. Field instances keep no state
    between validations, so the copies behave alike (docs/performance.md). Used by the bodies
    of the hot paths (`MemberReferenceSerializer` and what derives from it, an activity's items)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            name: copy.deepcopy(field) if isinstance(field, serializers.BaseSerializer) else copy.copy(field)
            for name, field in self._declared_fields.items()
        }


UNKNOWN_FIELD = "Unknown field: this operation does not take it."


def unknown_fields(serializer: serializers.BaseSerializer, data: Any) -> dict[str, Any]:
    """The fields of `data` that `serializer` does not declare, as validation details
    (`{"name": [message]}`, nested for nested serializers and lists of them)."""
    if isinstance(serializer, serializers.ListSerializer):
        if not isinstance(data, list):
            return {}
        found = {str(i): unknown_fields(serializer.child, item) for i, item in enumerate(data)}
        return {i: problems for i, problems in found.items() if problems}
    if not isinstance(serializer, serializers.Serializer) or not isinstance(data, Mapping):
        return {}
    fields = serializer.fields
    problems: dict[str, Any] = {name: [UNKNOWN_FIELD] for name in data if name not in fields}
    for name, field in fields.items():
        if name in data and isinstance(field, serializers.BaseSerializer):
            nested = unknown_fields(field, data[name])
            if nested:
                problems[name] = nested
    return problems


def parse_input(serializer_class: type[serializers.Serializer], request: Request, **context: Any) -> dict[str, Any]:
    """The validated body; else 400 `invalid` naming every invalid or unknown field."""
    serializer = serializer_class(data=request.data, context={"request": request, **context})
    unknown = unknown_fields(serializer, request.data)
    if not serializer.is_valid() or unknown:
        raise exceptions.ValidationError({**unknown, **serializer.errors})
    return dict(serializer.validated_data)


class OccurredAtField(serializers.DateTimeField):
    """When an activity happened: not more than `API_OCCURRED_AT_MAX_AGE_DAYS` ago, not later
    than now plus `API_CLOCK_SKEW_SECONDS` (a till's clock may run a little fast). The window
    keeps dates the ledger cannot compute with (expiry beyond year 9999) out, and says why."""

    def to_internal_value(self, value: Any) -> dt.datetime:
        moment = super().to_internal_value(value)
        now = timezone.now()
        max_age = dt.timedelta(days=settings.API_OCCURRED_AT_MAX_AGE_DAYS)
        skew = dt.timedelta(seconds=settings.API_CLOCK_SKEW_SECONDS)
        if moment < now - max_age:
            raise serializers.ValidationError(
                f"Too far in the past: the API takes activities of the last {max_age.days} days."
            )
        if moment > now + skew:
            raise serializers.ValidationError(
                f"In the future: the API takes moments up to {int(skew.total_seconds())} seconds ahead of its "
                "clock (check the sender's clock)."
            )
        return moment
