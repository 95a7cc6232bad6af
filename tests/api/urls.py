"""The project's URLs plus test-only operations of `ProgramApi` (a list, an endpoint that needs
an Idempotency-Key, a ledger posting, a crash), used with `@pytest.mark.urls("tests.api.urls")`."""

from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response

from config.urls import urlpatterns as project_urlpatterns
from loyalty import services
from loyalty.api.idempotency import idempotency_key
from loyalty.api.parsing import parse_input
from loyalty.api.references import MemberReferenceSerializer, member_from_reference
from loyalty.api.views import ProgramApi
from loyalty.models import Member, ProgramAPIKey


class MemberListApi(ProgramApi):
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        external_id = serializers.CharField(allow_null=True)

    def get(self, request):
        return self.paginated_response(Member.objects.filter(program=self.program), self.OutputSerializer)


class PointsEarnApi(ProgramApi):
    """A ledger posting behind the HTTP layer: the raw key goes to the ledger service."""

    idempotency_required = True

    class InputSerializer(MemberReferenceSerializer):
        points = serializers.IntegerField()

    def post(self, request):
        data = parse_input(self.InputSerializer, request)
        member = member_from_reference(program=self.program, reference=data)
        result = services.points_earn(
            program=self.program,
            member_id=member.pk,
            points=data["points"],
            idempotency_key=idempotency_key(request),
        )
        return Response({"entries": [e.id for e in result.entries], "available": result.balance.available}, status=201)


class AdjustmentProbeApi(ProgramApi):
    """Stands for the adjustments endpoint: its writes need the `adjust` scope."""

    write_scope = ProgramAPIKey.Scope.ADJUST

    def post(self, request):
        return Response({"ok": True}, status=201)


class CrashApi(ProgramApi):
    def get(self, request):
        raise RuntimeError("boom")


urlpatterns = [
    path("api/v1/test/members", MemberListApi.as_view()),
    path("api/v1/test/earn", PointsEarnApi.as_view()),
    path("api/v1/test/crash", CrashApi.as_view()),
    path("api/v1/test/adjust", AdjustmentProbeApi.as_view()),
    *project_urlpatterns,
]
handler404 = "loyalty.api.errors.page_not_found"
handler500 = "loyalty.api.errors.server_error"
