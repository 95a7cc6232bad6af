"""Staff limited to programs, in the admin (docs/back-office.md, "Roles and programs").

`ProgramScopedAdmin` is mixed into every ModelAdmin whose rows belong to a program; the admin
declares the path from its model to the program (`program_path = "program"`,
`"member__program"`, `"pk"` for programs themselves). For a user limited to some programs
(`loyalty.staff_scope`), it narrows:

- the change list, the actions and the autocomplete answers (`get_queryset`,
  `get_search_results`);
- the change, delete and history pages and every custom page that finds its object with
  `get_object`: another program's object answers 404 (not the admin's "doesn't exist" redirect,
  which would still tell it exists);
- the choices of every form field that picks a program or a row of a program (foreign keys,
  many-to-many, raw ids and the admins' own choice fields) to the user's programs;
- the choices of the list filters on such relations (a brand never reads another's names).

`scope_form(form, user)` narrows a custom page's form the same way, and `program_path_of(model)`
tells the path of any registered model (None: the model holds no program data).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest

from .. import staff_scope
from ..models import Program


def program_path_of(model: type[models.Model], site: admin.AdminSite | None = None) -> str | None:
    """The path from `model` to its program, as its admin declares it (Program: "pk")."""
    if model is Program:
        return "pk"
    model_admin = (site or admin.site)._registry.get(model)
    return getattr(model_admin, "program_path", None) if model_admin is not None else None


def scoped_choices(queryset: QuerySet, user: Any, site: admin.AdminSite | None = None) -> QuerySet:
    """A form field's or filter's queryset narrowed to the user's programs (unchanged when the
    model holds no program data or the user sees every program)."""
    path = program_path_of(queryset.model, site)
    return queryset if path is None else staff_scope.scope(queryset, path, user)


def scope_form(form: forms.BaseForm, user: Any, site: admin.AdminSite | None = None) -> forms.BaseForm:
    """Narrow every model choice field of `form` (a program, a member, a tier...) to `user`'s
    programs: what a limited user cannot pick is neither shown nor accepted."""
    if staff_scope.is_limited(user):
        for field in form.fields.values():
            if isinstance(field, forms.ModelChoiceField) and field.queryset is not None:
                field.queryset = scoped_choices(field.queryset, user, site)
    return form


class ScopedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A list filter on a relation whose choices are narrowed to the user's programs."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        if not staff_scope.is_limited(request.user):
            return super().field_choices(field, request, model_admin)
        related = field.remote_field.model
        queryset = scoped_choices(related._default_manager.all(), request.user, model_admin.admin_site)
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            queryset = queryset.order_by(*ordering)
        return [(obj.pk, str(obj)) for obj in queryset[:500]]


class ProgramScopedAdmin(admin.ModelAdmin):
    """Rows, pages, choices and filters narrowed to the user's programs (see the module)."""

    program_path: str = "program"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return staff_scope.scope(super().get_queryset(request), self.program_path, request.user)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return staff_scope.scope(queryset, self.program_path, request.user), may_have_duplicates

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is None and staff_scope.is_limited(request.user):
            field = self.model._meta.pk if from_field is None else self.model._meta.get_field(from_field)
            try:
                exists = self.model._default_manager.filter(**{field.name: field.to_python(object_id)}).exists()
            except Exception:  # a malformed id: the admin's own "doesn't exist"
                exists = False
            if exists:
                raise Http404("No such object in your programs.")
        return obj

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new object of a user limited to one program starts in that program."""
        initial = super().get_changeform_initial_data(request)
        ids = staff_scope.program_ids_for(request.user)
        if self.program_path == "program" and ids is not None and len(ids) == 1:
            initial.setdefault("program", ids[0])
        return initial

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class = super().get_form(request, obj, change, **kwargs)
        if not staff_scope.is_limited(request.user):
            return form_class
        user, site = request.user, self.admin_site

        class ScopedForm(form_class):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                scope_form(self, user, site)

        ScopedForm.__name__ = form_class.__name__
        return ScopedForm

    def get_changelist_formset(self, request: HttpRequest, **kwargs: Any) -> Any:
        formset = super().get_changelist_formset(request, **kwargs)
        if not staff_scope.is_limited(request.user):
            return formset
        user, site = request.user, self.admin_site

        class ScopedFormSet(formset):  # type: ignore[misc, valid-type]
            def add_fields(self, form: forms.BaseForm, index: Any) -> None:
                super().add_fields(form, index)
                scope_form(form, user, site)

        return ScopedFormSet

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and isinstance(field, forms.ModelChoiceField):
            field.queryset = scoped_choices(field.queryset, request.user, self.admin_site)
        return field

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if field is not None and isinstance(field, forms.ModelChoiceField):
            field.queryset = scoped_choices(field.queryset, request.user, self.admin_site)
        return field

    def get_list_filter(self, request: HttpRequest) -> Any:
        narrowed = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str) and self._is_scoped_relation(entry):
                entry = (entry, ScopedRelatedFieldListFilter)
            narrowed.append(entry)
        return narrowed

    def _is_scoped_relation(self, path: str) -> bool:
        try:
            field = get_fields_from_path(self.model, path)[-1]
        except Exception:
            return False
        related = getattr(getattr(field, "remote_field", None), "model", None)
        return related is not None and program_path_of(related, self.admin_site) is not None
