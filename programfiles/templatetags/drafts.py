"""`{{ program|open_draft }}`: the program's open configuration draft, or None (the program's page)."""

from __future__ import annotations

from django import template

from programfiles.models import ProgramDraft
from programfiles.selectors import draft_open

register = template.Library()


@register.filter
def open_draft(program: object) -> ProgramDraft | None:
    return draft_open(program.pk) if getattr(program, "pk", None) else None
