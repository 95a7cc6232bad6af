"""What every admin page of the project shares (docs/architecture.md: admin).

- `ReadOnlyAdmin`: view-only, whatever the user's permissions (every read-only admin of every
  app derives from it: ledger entries, activities, coupons, runs, deliveries...); and
  `ReadOnlyInline` for inlines.
- `LargeTableAdmin`: change lists that never count a whole table (`show_full_result_count =
  False` and a paginator that shows PostgreSQL's estimate for an unfiltered list and counts at
  most `CappedCountPaginator.cap` rows otherwise) and sort only by the primary key.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html

from ..models import Program


def _program_ids() -> list[int]:
    """All program ids (a handful). Adding `program_id IN (...)` to a look-up by email,
    external id, order id or key lets PostgreSQL use the (program, ...) indexes."""
    return list(Program.objects.order_by().values_list("id", flat=True))


def _as_int_id(term: str) -> int | None:
    return int(term) if term.isdigit() and int(term) < 2**63 else None


class CappedCountPaginator(Paginator):
    """Never counts a whole large table: a count of 10^7 rows takes seconds.

    - An unfiltered list of a large table: PostgreSQL's own estimate of its rows
      (`pg_class.reltuples`, kept by autovacuum's ANALYZE), shown as "about N".
    - Otherwise (a search, a filter, a small table): counts at most `cap` + 1 rows; past the cap
      the change list says "more than `cap`" (see pagination.html).
    """

    cap = 10_000

    @cached_property
    def estimate(self) -> int | None:
        """The table's estimated rows when the list is unfiltered and the table is larger than
        the cap; None otherwise."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return None
        query = queryset.query
        if query.where or query.distinct or query.combinator or query.low_mark or query.high_mark is not None:
            return None
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [queryset.model._meta.db_table]
            )
            row = cursor.fetchone()
        rows = row[0] if row else None
        return rows if rows is not None and rows > self.cap else None

    @cached_property
    def count(self) -> int:
        if self.estimate is not None:
            return self.estimate
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def estimated(self) -> bool:
        return self.estimate is not None

    @property
    def capped(self) -> bool:
        return not self.estimated and self.count > self.cap


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: no add, change or delete, whatever the user's permissions."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def without_single_program(list_display: Any) -> tuple:
    """A change list's columns without "program" when the installation runs one program: the
    column would repeat one name on every row and push the table past a 1440 px screen."""
    if "program" not in list_display or len(_program_ids()[:2]) > 1:
        return tuple(list_display)
    return tuple(column for column in list_display if column != "program")


class LargeTableAdmin(admin.ModelAdmin):
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    # Sorting by anything but the primary key sorts the whole table.
    sortable_by = ("id",)

    def get_list_display(self, request: HttpRequest) -> Any:
        return without_single_program(super().get_list_display(request))


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


def truncated_column(field_name: str, description: str, length: int = 40) -> Any:
    """A change-list column showing the start of a long text (reasons, references, URLs), the
    whole text in its tooltip: tables fit a 1440 px screen."""

    @admin.display(description=description)
    def column(model_admin: Any, obj: Any) -> str:
        text = str(getattr(obj, field_name) or "")
        if len(text) <= length:
            return text or model_admin.get_empty_value_display()
        return format_html('<span title="{}">{}…</span>', text, text[: length - 1].rstrip())

    return column
