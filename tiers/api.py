"""Tier endpoints of the REST API (docs/api.md): `GET /tiers`, the program's active tiers in order."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from loyalty.api.errors import error_responses
from loyalty.api.pagination import ApiCursorPagination
from loyalty.api.views import ProgramApi

from . import selectors


class TierPagination(ApiCursorPagination):
    ordering = "position"  # lowest tier first; unique per program, so a stable cursor


class TierListApi(ProgramApi):
    """The program's active tiers, lowest first, with the threshold on the program's metric
    (`metric`, over `window`), the earn multiplier, benefits and retention."""

    pagination_class = TierPagination

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        position = serializers.IntegerField()
        threshold = serializers.DecimalField(max_digits=14, decimal_places=2)
        metric = serializers.CharField(source="program.tier_metric")
        window = serializers.CharField(source="program.tier_window")
        multiplier = serializers.DecimalField(max_digits=6, decimal_places=3)
        benefits = serializers.CharField(allow_blank=True)
        retention_days = serializers.IntegerField()

    @extend_schema(summary="List tiers", responses={200: OutputSerializer(many=True), **error_responses(400)})
    def get(self, request: Request) -> Response:
        return self.paginated_response(
            selectors.program_tiers(program=self.program).select_related("program"), self.OutputSerializer
        )


urlpatterns = [
    path("tiers", TierListApi.as_view(), name="tier-list"),
]
