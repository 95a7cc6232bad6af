"""The dashboard, the first page a member of staff sees after logging in."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse


@staff_member_required
def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Dashboard")
