"""The admin's 403 and 404 pages for a member of staff (config/urls.py `handler403`,
`loyalty.api.errors.page_not_found` for 404): in the admin's frame rather than Django's bare page,
saying why in a manager's words: a page of a program the user does not work on answers 404
(`ProgramScopedAdmin`), a page their role does not include answers 403."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views import defaults

from .. import staff_scope


def _is_staff_page(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(request.path.startswith("/admin/") and user is not None and user.is_active and user.is_staff)


def _who(request: HttpRequest) -> dict[str, str]:
    user = request.user
    groups = ", ".join(user.groups.order_by("name").values_list("name", flat=True))
    role = "superuser" if user.is_superuser else (groups or "no role")
    names = list(staff_scope.programs_for(user).order_by("name").values_list("name", flat=True)[:20])
    programs = f"programs: {', '.join(names)}" if staff_scope.is_limited(user) else "every program"
    return {"username": user.get_username(), "role": role, "programs": programs}


PAGES = {
    404: (
        "Not found",
        "This page does not exist, or it belongs to a program you do not work on.",
        "If you need to see it, ask an owner to add the program to your account.",
    ),
    403: (
        "Not allowed",
        "Your role does not include this page.",
        "If you need it, ask an owner to change your role.",
    ),
}


def _page(request: HttpRequest, status: int) -> HttpResponse:
    title, reason, advice = PAGES[status]
    context = {**admin.site.each_context(request), **_who(request), "title": title, "reason": reason, "advice": advice}
    return TemplateResponse(request, "admin/loyalty/staff_error.html", context, status=status).render()


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _page(request, 404) if _is_staff_page(request) else defaults.page_not_found(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _page(request, 403) if _is_staff_page(request) else defaults.permission_denied(request, exception)
