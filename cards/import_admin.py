"""Staff pages of the member import and export (`cards.importing`).

- Member imports (list): past imports with their status and counts; "Upload a CSV" and
  "Export members" buttons.
- Upload (the add page): program + file -> a dry run, recorded as a `MemberImport` with the
  kept file -> redirect to its preview.
- Preview (the change page): what the import would do (new, updated, unchanged, opening
  balances, cards), warnings, the table of row errors, a sample of the changes, and an
  "Import" button that applies exactly that kept file (checked again, all or nothing).
- Export: one download button per program, a streamed CSV in the import's columns.

Everything here, export included (it is a bulk copy of customers' personal data), needs
`loyalty.add_member` (the owner and manager groups). Imports are never edited or deleted.
Registered by importing this module at the end of `cards/admin.py`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from loyalty.admin import CappedCountPaginator, ProgramScopedAdmin, scope_form
from loyalty.errors import LoyaltyError
from loyalty.models import Program
from loyalty.staff_scope import programs_for

from . import importing
from .models import MemberImport


def can_import_members(user: Any) -> bool:
    """Import and export of members need `loyalty.add_member` (owner and manager groups)."""
    return bool(user.is_active and user.is_staff and user.has_perm("loyalty.add_member"))


def max_upload_bytes() -> int:
    return getattr(settings, "MEMBER_IMPORT_MAX_BYTES", 200 * 1024 * 1024)


class MemberImportUploadForm(forms.Form):
    program = forms.ModelChoiceField(queryset=Program.objects.filter(is_active=True).order_by("name"))
    file = forms.FileField(
        label="CSV file",
        help_text=(
            "UTF-8, comma or semicolon separated, first line naming the columns: "
            f"{', '.join(importing.COLUMNS)} (external_id required). Nothing is imported yet: "
            "the next page shows what the import would do."
        ),
    )

    opening_balance_counts_for_tier = forms.BooleanField(
        required=False,
        label="Opening balances count toward tiers",
        help_text=(
            "Post opening balances as earned points (they count toward lifetime earned and the "
            '"points earned" tier metric), not as staff adjustments.'
        ),
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > max_upload_bytes():
            raise forms.ValidationError(f"The file is larger than {max_upload_bytes() // (1024 * 1024)} MB.")
        return upload


@admin.register(MemberImport)
class MemberImportAdmin(ProgramScopedAdmin):
    list_display = (
        "id",
        "created_at",
        "program",
        "file_name",
        "status",
        "rows",
        "new_count",
        "updated_count",
        "unchanged_count",
        "error_count",
        "opening_balance_total",
        "created_by",
    )
    list_display_links = ("id", "file_name")
    list_filter = ("status", "program")
    list_select_related = ("program", "created_by")
    ordering = ("-id",)
    sortable_by = ("id",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    change_list_template = "admin/cards/import/change_list.html"

    # -- permissions: one permission for the whole feature; no edits, no deletes ---------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_import_members(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_import_members(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return can_import_members(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _require(self, request: HttpRequest) -> None:
        if not can_import_members(request.user):
            raise PermissionDenied

    # -- urls --------------------------------------------------------------------------------

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("export/", view(self.export_view), name="{}_{}_export".format(*info)),
            path("export/<int:program_id>/", view(self.export_download_view), name="{}_{}_export_csv".format(*info)),
            path("<path:object_id>/apply/", view(self.apply_view), name="{}_{}_apply".format(*info)),
            path("<path:object_id>/file/", view(self.file_view), name="{}_{}_file".format(*info)),
            *super().get_urls(),
        ]

    def _preview_url(self, member_import: MemberImport) -> str:
        return reverse("admin:cards_memberimport_change", args=[member_import.pk])

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, **extra}

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "export_url": reverse("admin:cards_memberimport_export")}
        return super().changelist_view(request, extra_context)

    # -- upload -> dry run -------------------------------------------------------------------

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        self._require(request)
        if request.method == "POST":
            form = scope_form(MemberImportUploadForm(request.POST, request.FILES), request.user)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                member_import = importing.member_import_dry_run(
                    program=form.cleaned_data["program"],
                    file_name=upload.name,
                    data=upload.read(),
                    actor=request.user,
                    opening_balance_counts_for_tier=form.cleaned_data["opening_balance_counts_for_tier"],
                )
                self.log_addition(request, member_import, f"Dry run of {member_import.file_name}")
                return HttpResponseRedirect(self._preview_url(member_import))
        else:
            form = scope_form(MemberImportUploadForm(initial={"program": request.GET.get("program")}), request.user)
        context = self._context(
            request, title="Import members from a CSV file", form=form, media=self.media + form.media
        )
        return TemplateResponse(request, "admin/cards/import/upload.html", context)

    # -- preview (the change page) and apply ----------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> Any:
        self._require(request)
        member_import = self.get_object(request, unquote(object_id))
        if member_import is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        summary = member_import.summary or {}
        context = self._context(
            request,
            title=f"Import #{member_import.pk}: {member_import.file_name}",
            member_import=member_import,
            original=member_import,
            summary=summary,
            errors_shown=member_import.errors,
            errors_hidden=max(0, member_import.error_count - len(member_import.errors)),
            apply_url=reverse("admin:cards_memberimport_apply", args=[member_import.pk]),
            file_url=reverse("admin:cards_memberimport_file", args=[member_import.pk]),
            upload_url=reverse("admin:cards_memberimport_add") + f"?program={member_import.program_id}",
            changelist_url=reverse("admin:cards_memberimport_changelist"),
        )
        return TemplateResponse(request, "admin/cards/import/preview.html", context)

    def apply_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self._require(request)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        member_import = self.get_object(request, unquote(object_id))
        if member_import is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        try:
            member_import = importing.member_import_apply(member_import=member_import, actor=request.user)
        except LoyaltyError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(self._preview_url(member_import))
        if member_import.status == MemberImport.Status.APPLIED:
            message = (
                f"Imported {member_import.file_name}: {member_import.new_count} new, "
                f"{member_import.updated_count} updated, {member_import.unchanged_count} unchanged members; "
                f"{member_import.opening_balance_total} points of opening balances."
            )
            self.log_change(request, member_import, message)
            self.message_user(request, message, messages.SUCCESS)
        else:
            self.message_user(
                request,
                f"Nothing was imported: {member_import.error_count} error(s) found when applying (see below).",
                messages.ERROR,
            )
        return HttpResponseRedirect(self._preview_url(member_import))

    def file_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The kept upload, as it was checked and applied."""
        self._require(request)
        member_import = self.get_object(request, unquote(object_id))
        if member_import is None or not member_import.file:
            raise Http404("No such import file.")
        try:
            handle = member_import.file.open("rb")
        except OSError as exc:
            raise Http404("The file is no longer in storage.") from exc
        return FileResponse(handle, as_attachment=True, filename=member_import.file_name, content_type="text/csv")

    # -- export --------------------------------------------------------------------------------

    def export_view(self, request: HttpRequest) -> HttpResponse:
        self._require(request)
        programs = programs_for(request.user).order_by("name")
        context = self._context(
            request,
            title="Export members to CSV",
            programs=[(p, reverse("admin:cards_memberimport_export_csv", args=[p.pk])) for p in programs],
            columns=importing.COLUMNS,
            changelist_url=reverse("admin:cards_memberimport_changelist"),
        )
        return TemplateResponse(request, "admin/cards/import/export.html", context)

    def export_download_view(self, request: HttpRequest, program_id: int) -> HttpResponse:
        """Streams the CSV: rows are read in keyset pages while the client downloads."""
        self._require(request)
        program = get_object_or_404(programs_for(request.user), pk=program_id)
        include_anonymous = request.GET.get("anonymous") == "1"
        self.log_change(
            request, program, "Exported members to CSV" + (" (anonymous members included)" if include_anonymous else "")
        )
        response = StreamingHttpResponse(
            importing.member_export_csv(program=program, include_anonymous=include_anonymous),
            content_type="text/csv; charset=utf-8",
        )
        filename = f"members-{program.slug}-{timezone.localdate():%Y%m%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response
