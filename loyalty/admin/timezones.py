"""Dates in the program's time zone (docs/earning-rules.md: time zones in the admin).

A program runs in its own time zone (`Program.timezone`); staff read and type campaign
windows, reward windows and expiry dates in it, not in the server's UTC.

- `ProgramTimeZoneAdmin`: the add/change page of an object that belongs to a program is
  rendered and its form parsed with the program's zone active (Django converts datetimes from
  and to the current zone), and every date-time field is labelled with the zone. For a new
  object, the zone is the program chosen in the form (or in `?program=`), or the only program.
- `program_time_column`: a change-list column showing a datetime in its row's program zone
  (rows of several programs may share a page), with the zone's abbreviation.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db import models
from django.forms import Field
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from ..models import Program
from ..staff_scope import programs_for
from .base import without_single_program

_ZONE = "_program_time_zone"  # the zone of the page being built, set on the request


def _program_zone(program_id: Any) -> zoneinfo.ZoneInfo | None:
    if not str(program_id or "").isdigit():
        return None
    name = Program.objects.filter(pk=int(program_id)).values_list("timezone", flat=True).first()
    return zoneinfo.ZoneInfo(name) if name else None


class ProgramTimeZoneAdmin(admin.ModelAdmin):
    """Shows and parses the object's datetimes in its program's time zone."""

    def object_program_id(self, request: HttpRequest, object_id: str) -> Any:
        """The program id of the object being changed (its `program` foreign key). 1 query."""
        return self.model._default_manager.filter(pk=object_id).values_list("program_id", flat=True).first()

    def page_zone(self, request: HttpRequest, object_id: str | None) -> zoneinfo.ZoneInfo | None:
        """The zone of the page: the object's program's, else the program chosen in the form
        or the URL, else the only program's; None when it cannot be known yet."""
        program_id = None
        if object_id is not None and str(object_id).isdigit():
            program_id = self.object_program_id(request, object_id)
        if program_id is None:
            program_id = request.POST.get("program") or request.GET.get("program")
        if program_id is None:
            only = list(programs_for(request.user).order_by().values_list("id", flat=True)[:2])
            program_id = only[0] if len(only) == 1 else None
        return _program_zone(program_id)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        zone = self.page_zone(request, object_id)
        setattr(request, _ZONE, zone)
        if zone is None:
            return super().changeform_view(request, object_id, form_url, extra_context)
        with timezone.override(zone):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            # The page renders lazily: render it while the zone is active.
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
        return response

    def get_list_display(self, request: HttpRequest) -> Any:
        return without_single_program(super().get_list_display(request))

    def formfield_for_dbfield(self, db_field: models.Field, request: HttpRequest, **kwargs: Any) -> Field | None:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and isinstance(db_field, models.DateTimeField) and not db_field.auto_now_add:
            zone = getattr(request, _ZONE, None)
            label = f"Time zone: {zone.key}." if zone else "In the time zone of the program chosen above."
            field.help_text = f"{field.help_text} {label}".strip()
        return field


def program_time_column(field_name: str, description: str) -> Callable[[Any, Any], str]:
    """A change-list column: the row's `field_name` in the row's program time zone (the
    admin's `list_select_related` must include the program)."""

    @admin.display(description=description, ordering=field_name)
    def column(model_admin: Any, obj: Any) -> str:
        value = getattr(obj, field_name)
        if value is None:
            return model_admin.get_empty_value_display()
        local = value.astimezone(obj.program.tz)
        # Compact, so that a list with three dates fits a 1440 px screen: 2026-07-01 09:00 CEST.
        return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"

    return column
