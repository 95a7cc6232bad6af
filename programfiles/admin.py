"""Drafts and versions in the admin (docs/drafts.md), under "Rules and automations".

- A program's page has "Start a draft" (or "Open the draft") and "Versions".
- The draft's page shows what publishing it would change (live -> draft, per section and
  field), the draft's tiers, rewards, earning rules and automations with what is new, changed
  or removed against the live program, an edit form per item, "Edit as YAML", and "Publish"
  with a note. A stale draft (the live program changed since it was taken) shows what changed
  live and cannot be published.
- A version's page shows who published it, when, the note and its changes, and "Restore as a
  new draft".
Editing needs "change configuration draft"; publishing and restoring need "publish a
configuration draft" (Owner, Manager). Staff limited to programs see their programs' only.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from loyalty import errors, staff_scope
from loyalty.admin import ProgramScopedAdmin
from loyalty.models import Program

from . import selectors, services
from .export import DocumentUnreadable, dumps, export_document, item_key, loads
from .forms import DraftItemForm, PublishForm, YamlForm
from .loading import Change, DocumentInvalid
from .models import DRAFT_SECTIONS, ProgramDraft, ProgramVersion
from .spec import BY_NAME

PUBLISH = "programfiles.publish_programdraft"
EDIT = "programfiles.change_programdraft"
START = "programfiles.add_programdraft"

SINGULAR = {"tiers": "tier", "rewards": "reward", "earning_rules": "earning rule", "automations": "automation"}
ARTICLE = {"tiers": "a", "rewards": "a", "earning_rules": "an", "automations": "an"}


def grouped(changes: list[Change]) -> list[tuple[str, list[Change]]]:
    sections: dict[str, list[Change]] = {}
    for change in changes:
        sections.setdefault(BY_NAME[change.section].title, []).append(change)
    return list(sections.items())


def _label(section: str, item: dict[str, Any]) -> str:
    return str(item.get("name") or item_key(BY_NAME[section], item))


def draft_items(draft: ProgramDraft, live: dict[str, Any], changes: list[Change]) -> list[dict[str, Any]]:
    """Per section: the draft's items with their state against the live program (new,
    changed, unchanged) and the live items the draft removes."""
    touched: dict[tuple[str, str], str] = {}
    for change in changes:
        state = {"added": "new", "removed": "removed"}.get(change.action, "changed")
        touched.setdefault((change.section, change.key), state)
    out = []
    for name in DRAFT_SECTIONS:
        spec = BY_NAME[name]
        rows = [
            {
                "key": item_key(spec, item),
                "label": _label(name, item),
                "state": touched.get((name, item_key(spec, item)), "unchanged"),
                "active": item.get("is_active", True),
            }
            for item in draft.sections.get(name, [])
        ]
        rows += [
            {"key": item_key(spec, item), "label": _label(name, item), "state": "removed", "active": False}
            for item in live.get(name, [])
            if touched.get((name, item_key(spec, item))) == "removed"
        ]
        out.append({"name": name, "title": spec.title, "singular": f"{ARTICLE[name]} {SINGULAR[name]}", "rows": rows})
    return out


@admin.register(ProgramDraft)
class ProgramDraftAdmin(ProgramScopedAdmin):
    list_display = ("__str__", "program", "status", "created_by", "created_at", "updated_at", "version_link")
    list_filter = ("status",)
    list_select_related = ("program", "created_by", "version")
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).order_by("-id")

    @admin.display(description="Version")
    def version_link(self, draft: ProgramDraft) -> str:
        version = getattr(draft, "version", None) if draft.status == ProgramDraft.Status.PUBLISHED else None
        if version is None:
            return "-"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:programfiles_programversion_change", args=[version.pk]),
            version.number,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a draft starts from its program's page ("Start a draft")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # discarded, never deleted: versions and the audit trail refer to drafts

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("start/<int:program_id>/", view(self.start_view), name="programfiles_programdraft_start"),
            path("<int:draft_id>/item/<str:section>/", view(self.item_view), name="programfiles_programdraft_item"),
            path(
                "<int:draft_id>/remove/<str:section>/", view(self.remove_view), name="programfiles_programdraft_remove"
            ),
            path("<int:draft_id>/yaml/", view(self.yaml_view), name="programfiles_programdraft_yaml"),
            path("<int:draft_id>/publish/", view(self.publish_view), name="programfiles_programdraft_publish"),
            path("<int:draft_id>/discard/", view(self.discard_view), name="programfiles_programdraft_discard"),
            path("<int:draft_id>/rebase/", view(self.rebase_view), name="programfiles_programdraft_rebase"),
            *super().get_urls(),
        ]

    # -- helpers

    def _draft(self, request: HttpRequest, draft_id: int, perm: str | None = None) -> ProgramDraft:
        if perm and not request.user.has_perm(perm):
            raise PermissionDenied
        draft = self.get_object(request, str(draft_id))  # another program's draft: 404
        if draft is None:
            raise Http404("No such draft.")
        return draft

    def _page_url(self, draft: ProgramDraft) -> str:
        return reverse("admin:programfiles_programdraft_change", args=[draft.pk])

    def _context(self, request: HttpRequest, draft: ProgramDraft, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "draft": draft,
            "draft_url": self._page_url(draft),
            "program_url": reverse("admin:loyalty_program_change", args=[draft.program_id]),
        }

    # -- pages

    def start_view(self, request: HttpRequest, program_id: int) -> HttpResponse:
        if not request.user.has_perm(START):
            raise PermissionDenied
        program = get_object_or_404(Program, pk=program_id)
        if not staff_scope.may_see_program(request.user, program):
            raise Http404("No such program in your programs.")
        open_draft = selectors.draft_open(program)
        if open_draft is not None:
            messages.info(request, "This program already has an open draft.")
            return HttpResponseRedirect(self._page_url(open_draft))
        if request.method != "POST":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Start a draft of {program}",
                "program": program,
                "program_url": reverse("admin:loyalty_program_change", args=[program.pk]),
            }
            return TemplateResponse(request, "admin/programfiles/draft_start.html", context)
        try:
            draft = services.draft_start(program=program, actor=request.user)
        except errors.Conflict as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:loyalty_program_change", args=[program.pk]))
        messages.success(request, "Draft started: edit it here; nothing changes for members until you publish it.")
        return HttpResponseRedirect(self._page_url(draft))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        draft = self.get_object(request, object_id)
        if draft is None:
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        live = export_document(draft.program)
        is_open = draft.status == ProgramDraft.Status.OPEN
        changes = selectors.draft_changes(draft, live) if is_open else []
        stale = selectors.draft_live_changes(draft, live) if is_open else []
        version = ProgramVersion.objects.filter(draft=draft).first()
        context = {
            **self._context(request, draft, str(draft)),
            "is_open": is_open,
            "changes": grouped(changes),
            "change_count": len(changes),
            "stale": grouped(stale),
            "items": draft_items(draft, live, changes) if is_open else [],
            "version": version,
            "version_changes": grouped(selectors.version_changes(version)) if version else [],
            "can_edit": is_open and request.user.has_perm(EDIT),
            "can_publish": is_open and request.user.has_perm(PUBLISH),
            "publish_form": PublishForm(),
            "versions_url": reverse("admin:programfiles_programversion_changelist")
            + f"?program__id__exact={draft.program_id}",
        }
        return TemplateResponse(request, "admin/programfiles/draft.html", context)

    def item_view(self, request: HttpRequest, draft_id: int, section: str) -> HttpResponse:
        """One item's form, parsed and rendered in the program's time zone (as the live admin's
        forms are: `loyalty.admin.timezones`)."""
        draft = self._draft(request, draft_id, EDIT)
        with timezone.override(zoneinfo.ZoneInfo(draft.program.timezone)):
            response = self._item_page(request, draft, section)
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
        return response

    def _item_page(self, request: HttpRequest, draft: ProgramDraft, section: str) -> HttpResponse:
        if section not in DRAFT_SECTIONS or draft.status != ProgramDraft.Status.OPEN:
            raise Http404("No such part of an open draft.")
        spec = BY_NAME[section]
        key = request.GET.get("key") or None
        items = draft.sections.get(section, [])
        index = next((i for i, it in enumerate(items) if item_key(spec, it) == key), None) if key else None
        if key and index is None:
            raise Http404("No such item in the draft.")
        item = items[index] if index is not None else None
        form = DraftItemForm(
            request.POST or None, section=section, sections=draft.sections, item=item, zone=draft.program.timezone
        )
        if request.method == "POST" and form.is_valid():
            new = form.to_item()
            if item is None and not new.get("code"):
                new["code"] = services.unique_code(items, str(new.get("name") or ""), SINGULAR[section].split()[-1])
            try:
                services.draft_item_save(draft=draft, section=section, key=key, item=new, actor=request.user)
            except DocumentInvalid as exc:
                saved_items = sorted(
                    [*(it for it in items if item_key(spec, it) != key), new], key=lambda it: item_key(spec, it)
                )
                form.add_problems(exc.problems, saved_items.index(new))
            except errors.LoyaltyError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(
                    request, f"Saved in the draft: {_label(section, new)}. Nothing is live until you publish."
                )
                return HttpResponseRedirect(self._page_url(draft))
        live = export_document(draft.program)
        item_changes = [
            c for c in selectors.draft_changes(draft, live) if c.section == section and key is not None and c.key == key
        ]
        title = (
            f"Edit {SINGULAR[section]} {_label(section, item)}"
            if item
            else f"Add {ARTICLE[section]} {SINGULAR[section]}"
        )
        context = {
            **self._context(request, draft, f"{title} (draft)"),
            "form": form,
            "section": section,
            "item_changes": item_changes,
            "is_live": key is not None and any(item_key(spec, it) == key for it in live.get(section, [])),
            "media": form.media,
        }
        return TemplateResponse(request, "admin/programfiles/draft_item.html", context)

    def remove_view(self, request: HttpRequest, draft_id: int, section: str) -> HttpResponse:
        draft = self._draft(request, draft_id, EDIT)
        if request.method != "POST":
            return HttpResponseRedirect(self._page_url(draft))
        try:
            services.draft_item_remove(
                draft=draft, section=section, key=request.POST.get("key", ""), actor=request.user
            )
        except DocumentInvalid as exc:
            messages.error(request, "Not removed: " + "; ".join(str(p) for p in exc.problems[:5]))
        except errors.LoyaltyError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Removed from the draft.")
        return HttpResponseRedirect(self._page_url(draft))

    def yaml_view(self, request: HttpRequest, draft_id: int) -> HttpResponse:
        draft = self._draft(request, draft_id, EDIT)
        if draft.status != ProgramDraft.Status.OPEN:
            raise Http404("The draft is closed.")
        text = dumps({"version": 1, **selectors.sections_of(draft.sections)}) if request.method != "POST" else None
        form = YamlForm(request.POST or None, initial={"text": text})
        problems: list[str] = []
        if request.method == "POST" and form.is_valid():
            try:
                services.draft_sections_replace(
                    draft=draft, document=loads(form.cleaned_data["text"]), actor=request.user
                )
            except DocumentUnreadable as exc:
                problems = [str(exc)]
            except DocumentInvalid as exc:
                problems = [str(p) for p in exc.problems]
            except errors.LoyaltyError as exc:
                problems = [exc.message]
            else:
                messages.success(request, "Draft saved from the YAML. Nothing is live until you publish.")
                return HttpResponseRedirect(self._page_url(draft))
        context = {**self._context(request, draft, "Edit the draft as YAML"), "form": form, "problems": problems}
        return TemplateResponse(request, "admin/programfiles/draft_yaml.html", context)

    def publish_view(self, request: HttpRequest, draft_id: int) -> HttpResponse:
        draft = self._draft(request, draft_id, PUBLISH)
        if request.method != "POST":
            return HttpResponseRedirect(self._page_url(draft))
        form = PublishForm(request.POST)
        note = form.cleaned_data["note"] if form.is_valid() else ""
        try:
            version = services.draft_publish(draft=draft, actor=request.user, note=note)
        except services.DraftStale as exc:
            messages.error(request, exc.message)
        except DocumentInvalid as exc:
            messages.error(request, "Not published: " + "; ".join(str(p) for p in exc.problems[:5]))
        except errors.LoyaltyError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request, f"Published: version {version.number} is live ({len(version.changes)} change(s))."
            )
            return HttpResponseRedirect(reverse("admin:programfiles_programversion_change", args=[version.pk]))
        return HttpResponseRedirect(self._page_url(draft))

    def rebase_view(self, request: HttpRequest, draft_id: int) -> HttpResponse:
        draft = self._draft(request, draft_id, EDIT)
        if request.method == "POST":
            try:
                services.draft_rebase(draft=draft, actor=request.user)
            except DocumentInvalid as exc:
                messages.error(request, "Not updated: " + "; ".join(str(p) for p in exc.problems[:5]))
            except errors.LoyaltyError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, "The draft now starts from the live configuration, with your edits kept.")
        return HttpResponseRedirect(self._page_url(draft))

    def discard_view(self, request: HttpRequest, draft_id: int) -> HttpResponse:
        draft = self._draft(request, draft_id, EDIT)
        if request.method != "POST":
            return HttpResponseRedirect(self._page_url(draft))
        try:
            services.draft_discard(draft=draft, actor=request.user)
        except errors.LoyaltyError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(self._page_url(draft))
        messages.success(request, "Draft discarded; the live configuration is unchanged.")
        return HttpResponseRedirect(reverse("admin:loyalty_program_change", args=[draft.program_id]))


@admin.register(ProgramVersion)
class ProgramVersionAdmin(ProgramScopedAdmin):
    list_display = ("__str__", "program", "number", "published_by", "published_at", "note", "change_count")
    list_filter = ("program",)
    list_select_related = ("program", "published_by")
    show_full_result_count = False

    @admin.display(description="Changes")
    def change_count(self, version: ProgramVersion) -> int:
        return len(version.changes)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a version is history

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<int:version_id>/restore/", view(self.restore_view), name="programfiles_programversion_restore"),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        version = self.get_object(request, object_id)
        if version is None:
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": str(version),
            "version": version,
            "changes": grouped(selectors.version_changes(version)),
            "open_draft": selectors.draft_open(version.program_id),
            "can_restore": request.user.has_perm(PUBLISH),
            "program_url": reverse("admin:loyalty_program_change", args=[version.program_id]),
        }
        return TemplateResponse(request, "admin/programfiles/version.html", context)

    def restore_view(self, request: HttpRequest, version_id: int) -> HttpResponse:
        if not request.user.has_perm(PUBLISH):
            raise PermissionDenied
        version = self.get_object(request, str(version_id))
        if version is None:
            raise Http404("No such version.")
        here = reverse("admin:programfiles_programversion_change", args=[version.pk])
        if request.method != "POST":
            return HttpResponseRedirect(here)
        try:
            draft = services.version_restore(version=version, actor=request.user)
        except errors.LoyaltyError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(here)
        messages.success(
            request, f"Version {version.number} is in a new draft: check the changes, then publish it to make it live."
        )
        return HttpResponseRedirect(reverse("admin:programfiles_programdraft_change", args=[draft.pk]))
