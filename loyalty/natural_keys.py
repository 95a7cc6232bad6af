"""Natural keys of a program's configuration objects (docs/program-files.md).

Earning rules, automations, rewards and webhook endpoints carry a `code`: a slug unique in
their program that names them in program files (`programfiles`), where database ids would
differ between installations. A model fills an empty code from its name when it is saved;
staff may change it (a program file then sees a removed object and a new one).
"""

from __future__ import annotations

from django.db.models import Model, QuerySet
from django.utils.text import slugify

CODE_MAX_LENGTH = 80


def code_from(text: str, taken: set[str] | QuerySet, *, fallback: str = "item") -> str:
    """A slug of `text` (or `fallback`) not in `taken` (a set, or a queryset of codes): the slug,
    then the slug with -2, -3, ... appended."""
    base = (slugify(text) or fallback)[: CODE_MAX_LENGTH - 6].strip("-") or fallback
    candidate, number = base, 1
    while (candidate in taken) if isinstance(taken, set) else taken.filter(code=candidate).exists():
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def code_fill(instance: Model, text: str, *, fallback: str = "item") -> None:
    """Give `instance` (with `program_id` and `code`) a free code from `text` when it has none."""
    if instance.code or instance.program_id is None:
        return
    others = type(instance)._default_manager.filter(program_id=instance.program_id)
    if instance.pk is not None:
        others = others.exclude(pk=instance.pk)
    instance.code = code_from(text, others, fallback=fallback)
