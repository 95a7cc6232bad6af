"""The OpenAPI schema's conventions (drf-spectacular): what /api/schema/ documents for every
operation beyond its own `@extend_schema` (docs/api.md is the same contract in prose).

Guarantees: every operation documents the `ApiKeyAuth` scheme and the error envelope for 401,
403 and 429 (with `WWW-Authenticate` and `Retry-After`); every operation with a body documents
400, 409 (POST) and 413, and the `Idempotency-Key` header on POSTs (required where the view
says so); request bodies admit no property they do not declare (`additionalProperties: false`,
as `parse_input` refuses unknown fields); component names come from the nested serializers
(`CardAssignApi.InputSerializer` -> `CardAssignRequest`), operation ids from the view
(`CardAssignApi` -> `card_assign`).
"""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from .errors import error_responses
from .idempotency import IDEMPOTENCY_HEADER
from .views import ProgramApi


class ApiKeyAuthScheme(OpenApiAuthenticationExtension):
    """The `ApiKeyAuth` security scheme of the schema (spectacular has no contrib for
    djangorestframework-api-key)."""

    target_class = "loyalty.api.auth.ProgramAPIKeyAuthentication"
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
    """Spectacular's schema with the API's conventions (see the module docstring)."""

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
        codes = [401, 403, 429]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += [400, 413] + ([409] if self.method == "POST" else [])
        for code, response in error_responses(*codes).items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(response, str(code), direction=direction)
        return dict(sorted(responses.items()))

    def _map_basic_serializer(self, serializer: serializers.Serializer, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and self._is_program_api():
            schema["additionalProperties"] = False  # `parse_input` refuses unknown fields
        return schema

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
