"""What every admin page of the project shares (docs/architecture.md: admin).

- `ReadOnlyAdmin`: view-only, whatever the user's permissions (every read-only admin of every
  app derives from it: ledger entries, activities, coupons, runs, deliveries...); and
  `ReadOnlyInline` for inlines.
- `LargeTableAdmin`: change lists that never count a whole table (`show_full_result_count =
  False` and a paginator that counts at most `CappedCountPaginator.cap` rows) and sort only by
  the primary key.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.utils.functional import cached_property

from ..models import Program


def _program_ids() -> list[int]:
    """All program ids (a handful). Adding `program_id IN (...)` to a look-up by email,
    external id, order id or key lets PostgreSQL use the (program, ...) indexes."""
    return list(Program.objects.order_by().values_list("id", flat=True))


def _as_int_id(term: str) -> int | None:
    return int(term) if term.isdigit() and int(term) < 2**63 else None


class CappedCountPaginator(Paginator):
    """Counts at most `cap` rows: a filtered count on a table of 10^8 rows would take
    minutes. Past the cap the change list shows `cap` results (see pagination.html)."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: no add, change or delete, whatever the user's permissions."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LargeTableAdmin(admin.ModelAdmin):
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    # Sorting by anything but the primary key sorts the whole table.
    sortable_by = ("id",)


class ReadOnlyInline(admin.TabularInline):
    """A view-only inline: no rows added, changed or deleted."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
