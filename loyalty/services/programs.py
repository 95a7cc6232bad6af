"""Programs: creating one with its settings validated."""

from __future__ import annotations

from typing import Any

from loyalty.models import Program

from .checks import full_clean


def program_create(*, name: str, slug: str, **fields: Any) -> Program:
    program = Program(name=name, slug=slug, **fields)
    full_clean(program)
    program.save()
    return program
