"""Staff admin of the API keys (docs/api.md: a key is shown once when created, stored hashed,
revocable, expiring). Imported by `loyalty/admin/__init__.py`.

The library's own `APIKey` model (installed with `rest_framework_api_key`) is not used by the
API; its admin page is removed so that nobody creates keys that authenticate nothing.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from .. import services
from ..models import ProgramAPIKey, default_api_key_scopes
from .scope import ProgramScopedAdmin

if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


class ProgramAPIKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ProgramAPIKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=default_api_key_scopes,
        help_text="Read: GET. Write: POST and PATCH. Adjust: manual point adjustments.",
    )

    class Meta:
        model = ProgramAPIKey
        fields = ["program", "name", "scopes", "expiry_date", "revoked"]


@admin.register(ProgramAPIKey)
class ProgramAPIKeyAdmin(ProgramScopedAdmin, APIKeyModelAdmin):
    form = ProgramAPIKeyForm
    list_display = ("prefix", "name", "program", "scope_list", "created", "expiry_date", "_has_expired", "revoked")
    list_filter = ("revoked", "program", "created")
    list_select_related = ("program",)
    search_fields = ("name", "prefix")
    autocomplete_fields = ("program",)
    actions = ["revoke_keys"]
    _changeable = ("name", "scopes", "expiry_date", "revoked")

    @admin.display(description="Scopes")
    def scope_list(self, obj: ProgramAPIKey) -> str:
        return ", ".join(obj.scopes)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is not None:
            # A key stays with its program; a revoked key is frozen (the library's rule).
            fields += ("program",) + (("scopes",) if obj.revoked else ())
        return fields

    def save_model(self, request: HttpRequest, obj: ProgramAPIKey, form: Any = None, change: bool = False) -> None:
        if change:
            changed = [name for name in (form.changed_data if form else []) if name in self._changeable]
            services.api_key_update(api_key=obj, **{name: getattr(obj, name) for name in changed})
            return
        created, key = services.api_key_create(
            program=obj.program, name=obj.name, scopes=obj.scopes, expiry_date=obj.expiry_date
        )
        if obj.revoked:  # created revoked from the form: a key that never works
            services.api_key_revoke(api_key_ids=[created.pk])
        obj.pk = created.pk  # the admin logs and redirects to the saved key
        obj.refresh_from_db()
        obj._state.adding = False
        messages.warning(
            request,
            f"The API key for {obj.name!r} ({obj.program}) is: {key} — copy it now and store it safely: "
            "it is stored hashed and will not be shown again.",
        )

    @admin.action(description="Revoke the selected keys (cannot be undone)")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ProgramAPIKey]) -> None:
        count = services.api_key_revoke(api_key_ids=queryset.values_list("pk", flat=True))
        messages.success(request, f"{count} key(s) revoked.")
