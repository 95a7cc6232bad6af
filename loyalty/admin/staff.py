"""Staff accounts: the user's admin page gains "Programs this user works on" (`StaffProgram`, an
inline; none: every program) and the list shows each user's role and programs
(docs/back-office.md, "Roles and programs"). Roles are the groups "Owner", "Manager" and
"Support" (migration 0018); `manage.py staff_role` does the same from a shell.

Only a user who sees every program adds or changes staff accounts and groups: a user limited to
brand A who could remove a colleague's rows, create a user (with no rows: every program) or
widen a group would reach every brand. They may still read them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db.models import Prefetch
from django.http import HttpRequest

from .. import staff_scope
from ..models import StaffProgram

User = get_user_model()


class StaffProgramInline(admin.TabularInline):
    model = StaffProgram
    fk_name = "user"
    extra = 0
    verbose_name = "program"
    verbose_name_plural = "Programs this user works on (none: every program; superusers always see every program)"

    def _editable(self, request: HttpRequest) -> bool:
        return not staff_scope.is_limited(request.user) and request.user.has_perm("auth.change_user")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("auth.view_user")


class UnlimitedStaffOnly(admin.ModelAdmin):
    """Read-only for a user limited to some programs (accounts and roles span every program)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not staff_scope.is_limited(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not staff_scope.is_limited(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not staff_scope.is_limited(request.user) and super().has_delete_permission(request, obj)


class StaffGroupAdmin(UnlimitedStaffOnly, GroupAdmin):
    pass


class StaffUserAdmin(UnlimitedStaffOnly, UserAdmin):
    inlines = (*UserAdmin.inlines, StaffProgramInline)
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "role", "programs")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")

    def get_queryset(self, request: HttpRequest) -> Any:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                "groups",
                Prefetch("staff_programs", queryset=StaffProgram.objects.select_related("program").order_by("program")),
            )
        )

    @admin.display(description="role")
    def role(self, obj: Any) -> str:
        if obj.is_superuser:
            return "Superuser"
        return ", ".join(group.name for group in obj.groups.all()) or "—"

    @admin.display(description="programs")
    def programs(self, obj: Any) -> str:
        names = [row.program.name for row in obj.staff_programs.all()]
        return ", ".join(names) if names and not obj.is_superuser else "All programs"


for model, model_admin in ((User, StaffUserAdmin), (Group, StaffGroupAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
