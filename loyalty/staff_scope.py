"""Which programs a member of staff may see (issue 13, "staff can be limited to programs").

Every admin list, admin page and report narrows what it shows with `programs_for(user)`.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from loyalty.models import Program


def programs_for(user: Any) -> QuerySet[Program]:
    """The programs `user` may see and act on: every program, until staff scoping is in place."""
    return Program.objects.all()
