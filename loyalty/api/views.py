"""`ProgramApi`, the base of every /api/v1/ operation: it puts the machinery of this package
together (docs/api.md).

Guarantees, in order: a valid key of an active program (401), the scope the method needs
(403), the key's rate limit (429), the body size (413), then the operation; every POST goes
through the HTTP idempotency layer; `self.program` is the only program the operation can reach;
lists are cursor-paginated; bodies are JSON with bounded nesting. An operation is one class
(docs/contributing.md)::

    class CardAssignApi(ProgramApi):
        idempotency_required = False          # True for the endpoints docs/api.md marks (I)

        class InputSerializer(MemberReferenceSerializer): ...

        @extend_schema(request=InputSerializer, responses={200: CardSerializer, **error_responses(404, 422)})
        def post(self, request, number):
            data = parse_input(self.InputSerializer, request)
            ...  # one service call with program=self.program
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty.models import Program, ProgramAPIKey

from .auth import HasProgramAPIKeyScope, ProgramAPIKeyAuthentication, Scope, api_program, key_can_read
from .idempotency import _idempotent
from .pagination import ApiCursorPagination
from .parsing import ApiJSONParser, check_body_size
from .throttling import APIKeyRateThrottle


class ProgramApi(APIView):
    """Base of every /api/v1/ operation: a program's API key (401), the scope (403), the rate
    limit (429), and `self.program` to filter every look-up by. List operations return
    `self.paginated_response(queryset, OutputSerializer)`.

    Every `post` of a subclass is wrapped by the HTTP idempotency layer: the Idempotency-Key
    header is accepted everywhere, and required where `idempotency_required = True` (the
    endpoints docs/api.md marks (I)). `write_scope = Scope.ADJUST` for adjustments."""

    authentication_classes = [ProgramAPIKeyAuthentication]
    permission_classes = [HasProgramAPIKeyScope]
    throttle_classes = [APIKeyRateThrottle]
    parser_classes = [ApiJSONParser]
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
        check_body_size(request)  # before anything reads the body

    @property
    def program(self) -> Program:
        return api_program(self.request)

    @property
    def shows_member_data(self) -> bool:
        """Whether the answer may carry member data (the key has the `read` scope)."""
        return key_can_read(self.request)

    def serializer_context(self) -> dict[str, Any]:
        """The context of output serializers (`ReadScopedSerializer` needs the request)."""
        return {"request": self.request}

    def paginated_response(self, queryset: QuerySet[Any], serializer_class: type[serializers.Serializer]) -> Response:
        """A page of `queryset` (already filtered by `self.program`) as `{"results", "next"}`."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(
            serializer_class(page, many=True, context=self.serializer_context()).data
        )
