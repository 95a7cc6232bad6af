"""Automation endpoints of the REST API (docs/api.md, "Automations"): what an automation would do
if it ran now, and switching it on with a confirmation.

`POST /automations/{id}/activate` without `"confirm": true` answers 409 `confirmation_required`
whose `details.preview` is the audience and cost; with `expected` (the figures the caller showed
its user), a 409 `audience_changed` when they moved beyond the tolerance. The key needs the
`adjust` scope (switching on an automation gives points, as a manual adjustment does); the
switch is audited with the key's prefix (`workflows.activation`). Another program's automation
is a 404, like an unknown id.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from loyalty import errors
from loyalty.api.auth import Scope
from loyalty.api.errors import error_responses
from loyalty.api.parsing import InputSerializer, parse_input
from loyalty.api.views import ProgramApi

from . import activation
from .models import Automation

ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The automation's id.")


class FiguresSerializer(InputSerializer):
    members = serializers.IntegerField(min_value=0)
    points = serializers.IntegerField(min_value=0, required=False, default=0)
    coupons = serializers.IntegerField(min_value=0, required=False, default=0)
    emails = serializers.IntegerField(min_value=0, required=False, default=0)
    tiers = serializers.IntegerField(min_value=0, required=False, default=0)


class SampleMemberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.CharField()
    external_id = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    automation_id = serializers.IntegerField()
    automation = serializers.CharField()
    is_active = serializers.BooleanField()
    trigger = serializers.CharField()
    acts_now = serializers.BooleanField(help_text="Daily automations act at the next run; event ones on events.")
    as_of = serializers.DateTimeField()
    period_key = serializers.CharField()
    members = serializers.IntegerField(help_text="Members it would act on now (those served this period left out).")
    sample = SampleMemberSerializer(many=True)
    currency = serializers.CharField()
    points_each = serializers.IntegerField()
    points = serializers.IntegerField()
    points_value = serializers.DecimalField(max_digits=18, decimal_places=2, allow_null=True)
    reward_id = serializers.IntegerField(allow_null=True)
    reward = serializers.CharField()
    coupons = serializers.IntegerField()
    coupon_value_each = serializers.DecimalField(max_digits=18, decimal_places=2, allow_null=True)
    coupons_value = serializers.DecimalField(max_digits=18, decimal_places=2, allow_null=True)
    coupon_note = serializers.CharField()
    emails = serializers.IntegerField()
    email_note = serializers.CharField()
    tier = serializers.CharField()
    tiers = serializers.IntegerField()
    figures = serializers.DictField(child=serializers.IntegerField())
    sentence = serializers.CharField()


def _automation_id(api: ProgramApi, automation_id: int) -> int:
    """The automation of the key's program (404 otherwise)."""
    if not Automation.objects.filter(pk=automation_id, program=api.program).exists():
        raise errors.NotFound("No such automation.", automation_id=automation_id)
    return automation_id


class AutomationPreviewApi(ProgramApi):
    """What the automation would do if it ran now: the members (count and the first 10 by id),
    the points, coupons, emails and tiers, and their money value. Writes nothing."""

    @extend_schema(
        summary="Preview an automation's audience and cost",
        parameters=[ID_PARAMETER],
        responses={200: OpenApiResponse(PreviewSerializer), **error_responses(404)},
    )
    def get(self, request: Request, automation_id: int) -> Response:
        automation = Automation.objects.select_related("program", "set_tier").get(
            pk=_automation_id(self, automation_id)
        )
        return Response(activation.activation_preview(automation=automation).as_data())


class AutomationActivateApi(ProgramApi):
    """Switch the automation on. Without `"confirm": true`: 409 `confirmation_required`, the
    preview in `details.preview`. With `expected` (the figures of a preview the caller showed):
    409 `audience_changed` when one moved more than 5 %, the new preview in `details.preview`.
    An automation that is on already: 200 with `activated: false`."""

    write_scope = Scope.ADJUST

    class InputSerializer(InputSerializer):
        confirm = serializers.BooleanField(
            required=False, default=False, help_text="true: the caller confirms the audience and cost."
        )
        expected = FiguresSerializer(
            required=False, help_text="The `figures` of the preview that was confirmed (optional)."
        )

    class OutputSerializer(serializers.Serializer):
        activated = serializers.BooleanField()
        preview = PreviewSerializer()

    @extend_schema(
        summary="Switch an automation on (after confirming its audience and cost)",
        parameters=[ID_PARAMETER],
        request=InputSerializer,
        responses={200: OpenApiResponse(OutputSerializer), **error_responses(404, 409)},
    )
    def post(self, request: Request, automation_id: int) -> Response:
        data = parse_input(self.InputSerializer, request)
        expected = data.get("expected")
        result = activation.automation_activate(
            automation_id=_automation_id(self, automation_id),
            api_key=request.auth,
            confirm=data["confirm"],
            seen=dict(expected) if expected is not None else None,
        )
        return Response({"activated": result.activated, "preview": result.preview.as_data()})


urlpatterns = [
    path("automations/<int:automation_id>/preview", AutomationPreviewApi.as_view(), name="automation-preview"),
    path("automations/<int:automation_id>/activate", AutomationActivateApi.as_view(), name="automation-activate"),
]
