"""Page numbers for the portal's long lists (my coupons, my referrals): `?page=N`, a count and
one slice, Previous/Next links rendered by `portal/_pager.html` (docs/portal.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest

MAX_PAGE = 10_000


@dataclass
class Paged:
    items: list[Any]
    number: int
    pages: int
    total: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def previous_number(self) -> int:
        return self.number - 1

    @property
    def next_number(self) -> int:
        return self.number + 1


def page_number(request: HttpRequest) -> int:
    """The `page` query parameter, 1 when missing or not a number (a bad value is never an
    error page)."""
    try:
        return max(1, min(int(request.GET.get("page", "1")), MAX_PAGE))
    except ValueError:
        return 1


def paged(queryset: QuerySet[Any], *, number: int, size: int) -> Paged:
    """One page of an ordered queryset. A number past the last page shows the last page.
    Queries: 1 (the count) + 1 (the page) when there is anything to show."""
    total = queryset.count()
    pages = max(1, -(-total // size))
    number = min(max(number, 1), pages)
    start = (number - 1) * size
    items = list(queryset[start : start + size]) if total else []
    return Paged(items=items, number=number, pages=pages, total=total)
