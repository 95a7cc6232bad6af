"""Programs: creating one with its settings validated."""

from __future__ import annotations

import secrets
from typing import Any

from loyalty.models import Program

from .checks import full_clean


def program_create(*, name: str, slug: str, **fields: Any) -> Program:
    program = Program(name=name, slug=slug, **fields)
    full_clean(program)
    program.save()
    return program


def program_widget_secret_rotate(*, program: Program) -> str:
    """A new widget secret for `program` (the shop's tokens signed with the old one stop working
    at once); returns it. docs/portal.md, "The shop widget"."""
    secret = secrets.token_urlsafe(32)
    Program.objects.filter(pk=program.pk).update(widget_secret=secret)
    program.widget_secret = secret
    return secret


def program_widget_off(*, program: Program) -> None:
    """Forget the program's widget secret: the widget is off (every token is refused)."""
    Program.objects.filter(pk=program.pk).update(widget_secret="")
    program.widget_secret = ""
