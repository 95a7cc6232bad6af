"""Which programs a member of staff may see (issue 13, "staff can be limited to programs";
docs/back-office.md, "Roles and programs").

Every admin list, admin page and report narrows what it shows with `programs_for(user)`:

- a superuser sees every program;
- a staff user with no `StaffProgram` row sees every program (a merchant with one brand never
  sets anything, and nobody is locked out by an upgrade);
- a staff user with rows sees those programs only; a program added later stays hidden from
  them until it is added to their list;
- anyone else (anonymous, inactive, not staff) sees none.

The answer costs one query per user object (cached on it: `request.user` lives for a request)
and none for a superuser. The queryset it returns filters by a list of ids, so
`Member.objects.filter(program__in=programs_for(user))` adds no subquery.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet

from loyalty.models import Program, StaffProgram

_CACHE = "_staff_program_ids"


def program_ids_for(user: Any) -> list[int] | None:
    """The ids of the programs `user` is limited to, or None for every program. Cached on `user`."""
    if user is None or not getattr(user, "is_authenticated", False):
        return []
    cached = getattr(user, _CACHE, False)
    if cached is not False:
        return cached
    if not (user.is_active and user.is_staff):
        ids: list[int] | None = []
    elif user.is_superuser:
        ids = None
    else:
        ids = sorted(StaffProgram.objects.filter(user_id=user.pk).values_list("program_id", flat=True)) or None
    setattr(user, _CACHE, ids)
    return ids


def forget(user: Any) -> None:
    """Drop the cached answer (after the user's programs changed)."""
    if hasattr(user, _CACHE):
        delattr(user, _CACHE)


def is_limited(user: Any) -> bool:
    """True when `user` sees only some programs (never for a superuser)."""
    return program_ids_for(user) is not None


def programs_for(user: Any) -> QuerySet[Program]:
    """The programs `user` may see and act on."""
    ids = program_ids_for(user)
    return Program.objects.all() if ids is None else Program.objects.filter(pk__in=ids)


def may_see_program(user: Any, program: Program | int | None) -> bool:
    ids = program_ids_for(user)
    program_id = program.pk if isinstance(program, Model) else program
    return ids is None or program_id in ids


def scope(queryset: QuerySet, path: str, user: Any) -> QuerySet:
    """`queryset` narrowed to `user`'s programs, the rows reaching their program through `path`
    ("program", "member__program", ...; "pk" for programs themselves). Unchanged for a user
    who sees every program."""
    ids = program_ids_for(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{path}__in": ids})
