"""The admin of budgets (docs/budgets.md; registered by the last lines of `workflows/admin.py`).

A rule's and an automation's budget are fields of their forms; `BudgetUseAdminMixin` adds the
column and the change page's line that show each budget's use in the current period (used /
limit, percent, period), read for a whole page in one query (`budgets.uses_of`). A program's
budget is its own row (`ProgramBudget`, one per program). The awards budgets cut are listed
read-only (`BudgetCut`): why a purchase earned less.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from loyalty.admin import ProgramScopedAdmin, ReadOnlyAdmin, truncated_column

from . import budgets
from .models import BudgetCut, ProgramBudget

BUDGET_FIELDS = ("budget_total", ("budget_per_period", "budget_period"))


def _html(counters: list[budgets.Counter] | None) -> str:
    if not counters:
        return "-"

    def style(counter: budgets.Counter) -> str:
        percent = counter.used * 100 // counter.limit if counter.limit else 100
        colour = "color:#ba2121;font-weight:bold" if percent >= 100 else "color:#a35a00" if percent >= 80 else ""
        return f"white-space:nowrap;{colour}"

    return format_html_join(
        mark_safe("<br>"),
        "<span style='{}'>{}</span>",
        ((style(c), budgets.use_line(c)) for c in counters),
    )


class BudgetUseAdminMixin:
    """`budget_use` for list_display and readonly_fields. The change list reads the use of the
    page's rows in one query (`get_changelist_instance`); the change page reads its object's."""

    def _owner(self, obj: Any) -> budgets.Owner:
        return budgets.owner_of(obj)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)  # type: ignore[misc]
        rows = [r for r in changelist.result_list if budgets.has_budget(r)]
        uses = budgets.uses_of([(r.program, self._owner(r)) for r in rows], now=timezone.now()) if rows else {}
        for row in changelist.result_list:
            row.budget_counters = uses.get(self._owner(row).key) if budgets.has_budget(row) else None
        return changelist

    @admin.display(description="Budget use")
    def budget_use(self, obj: Any) -> str:
        if obj is None or not getattr(obj, "pk", None) or not budgets.has_budget(obj):
            return "-"
        counters = getattr(obj, "budget_counters", None)
        if counters is None:
            counters = budgets.uses_of([(obj.program, self._owner(obj))], now=timezone.now()).get(self._owner(obj).key)
        return _html(counters)


@admin.register(ProgramBudget)
class ProgramBudgetAdmin(BudgetUseAdminMixin, ProgramScopedAdmin):
    """A program's budget: the points all its rules and automations together may award."""

    list_display = ("program", "budget_total", "budget_per_period", "budget_period", "budget_use")
    list_select_related = ("program",)
    fields = ("program", *BUDGET_FIELDS, "budget_use")
    readonly_fields = ("budget_use",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The program is the key of its budget: chosen once.
        return ("program", "budget_use") if obj is not None else ("budget_use",)


@admin.register(BudgetCut)
class BudgetCutAdmin(ProgramScopedAdmin, ReadOnlyAdmin):
    """Awards a budget cut or stopped, newest first: read-only (written with the award)."""

    list_display = ("at", "member", "activity", "rule", "automation", "wanted", "given", "short_reason")
    short_reason = truncated_column("reason", "reason", 80)
    list_select_related = ("member", "activity", "rule", "automation")
    list_filter = ("budget_scope", "program")
    search_fields = ("=member__id", "=member__external_id", "=activity__order_id")
    search_help_text = "Member id or external id, or an order id"
    autocomplete_fields = ("member", "activity", "rule", "automation")
    show_full_result_count = False
    ordering = ("-id",)
