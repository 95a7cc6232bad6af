"""Staff admin of card batches (bulk creation of card stock) and its custom pages.

- The list: id, program, quantity, progress, status, sheet status, who and when.
- "Add card batch" is the create page (program, quantity, note) calling `batch_create`.
- A batch's page shows a progress bar polled every second through htmx until generation (or
  the PDF) is finished; with eager tasks (no broker) the batch is already done when the page
  first renders. Buttons: resume, discard, build the PDF, download the CSV and the PDF.
  Below, the batch's events (created, resumed, failed, done, discarded, PDF requested: who
  and when), which are its history (no admin LogEntry is written).

Every write is a service of `cards.batches`; creating, resuming, discarding, printing and
downloading (the CSV holds claim PINs) need `cards.add_cardbatch`; the list and the batch
page need view permission. Batches are never edited or deleted (numbers are never reused).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from loyalty.admin import CappedCountPaginator, ProgramScopedAdmin, scope_form
from loyalty.errors import LoyaltyError
from loyalty.forms import IdempotentForm
from loyalty.models import Program

from . import batches, selectors, views
from .models import CardBatch


class CardBatchCreateForm(IdempotentForm):
    program = forms.ModelChoiceField(queryset=Program.objects.filter(is_active=True).order_by("name"))
    quantity = forms.IntegerField(
        min_value=1,
        max_value=batches.MAX_QUANTITY,
        help_text=f"Number of unassigned physical cards to create (1 to {batches.MAX_QUANTITY:,}).",
    )
    note = forms.CharField(
        max_length=255, required=False, help_text="For staff: which stores or campaign the cards are for."
    )


@admin.register(CardBatch)
class CardBatchAdmin(ProgramScopedAdmin):
    list_display = (
        "id",
        "program",
        "quantity",
        "progress",
        "status",
        "created_at",
    )
    list_display_links = ("id", "program")
    list_filter = ("status", "program")
    list_select_related = ("program", "created_by")
    search_fields = ("=id", "program__name")  # the card admin picks a batch by autocomplete
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    ordering = ("-id",)
    sortable_by = ("id",)
    actions = ("resume_batches", "discard_batches", "build_sheets")

    # -- permissions: batches change only through the services -------------------------------

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _require_add(self, request: HttpRequest) -> None:
        if not self.has_add_permission(request):
            raise PermissionDenied

    # -- list ----------------------------------------------------------------------------------

    @admin.display(description="Progress")
    def progress(self, obj: CardBatch) -> str:
        return format_html('<progress value="{}" max="100"></progress> {}%', obj.percent, obj.percent)

    # -- URLs ------------------------------------------------------------------------------------

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("<int:batch_id>/progress/", view(views.batch_progress_view), name="{}_{}_progress".format(*info)),
            path("<int:batch_id>/csv/", view(views.batch_csv_view), name="{}_{}_csv".format(*info)),
            path("<int:batch_id>/pdf/", view(views.batch_sheet_view), name="{}_{}_pdf".format(*info)),
            path("<path:object_id>/resume/", view(self.resume_view), name="{}_{}_resume".format(*info)),
            path("<path:object_id>/discard/", view(self.discard_view), name="{}_{}_discard".format(*info)),
            path("<path:object_id>/build-pdf/", view(self.build_sheet_view), name="{}_{}_build_pdf".format(*info)),
            *super().get_urls(),
        ]

    def _batch_url(self, batch: CardBatch) -> str:
        return reverse("admin:cards_cardbatch_change", args=[batch.pk])

    # -- create page (the admin's "add") -------------------------------------------------------

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        self._require_add(request)
        if request.method == "POST":
            form = scope_form(CardBatchCreateForm(request.POST), request.user)
            if form.is_valid():
                try:
                    batch = batches.batch_create(
                        program=form.cleaned_data["program"],
                        quantity=form.cleaned_data["quantity"],
                        note=form.cleaned_data["note"],
                        actor=request.user,
                        idempotency_key=form.service_key("card_batch"),
                    )
                except LoyaltyError as exc:
                    form.add_error(
                        exc.details.get("field") if exc.details.get("field") in form.fields else None, exc.message
                    )
                else:
                    batch.refresh_from_db()
                    self.message_user(request, f"{batch} created.", messages.SUCCESS)
                    return HttpResponseRedirect(self._batch_url(batch))
        else:
            form = scope_form(CardBatchCreateForm(initial={"program": request.GET.get("program")}), request.user)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Create a batch of cards",
            "form": form,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/cards/cardbatch/create.html", context)

    # -- batch page ------------------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        batch = self.get_object(request, unquote(object_id))
        if batch is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        can_add = self.has_add_permission(request)
        progress = views.batch_progress_context(batch)
        context = {
            **self.admin_site.each_context(request),
            **progress,
            "opts": self.opts,
            "title": str(batch),
            "subtitle": batch.note,
            "can_manage": can_add,
            "can_resume": can_add and batches.batch_can_resume(batch),
            "can_discard": can_add and batch.status not in (CardBatch.Status.DONE, CardBatch.Status.DISCARDED),
            "can_print": can_add and batch.status == CardBatch.Status.DONE,
            "sheet_ready": batch.sheet_status == CardBatch.SheetStatus.READY and bool(batch.sheet),
            "events": list(selectors.batch_events(batch=batch)),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/cards/cardbatch/batch.html", context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        """A batch's history is its events, listed on the batch page."""
        batch = self.get_object(request, unquote(object_id))
        if batch is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        return HttpResponseRedirect(self._batch_url(batch) + "#batch-events")

    def _post_on_batch(self, request: HttpRequest, object_id: str) -> CardBatch | HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        self._require_add(request)
        batch = self.get_object(request, unquote(object_id))
        if batch is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return batch

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        batch = self._post_on_batch(request, object_id)
        if not isinstance(batch, CardBatch):
            return batch
        self._resume(request, batch)
        return HttpResponseRedirect(self._batch_url(batch))

    def discard_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        batch = self._post_on_batch(request, object_id)
        if not isinstance(batch, CardBatch):
            return batch
        self._discard(request, batch)
        return HttpResponseRedirect(self._batch_url(batch))

    def build_sheet_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        batch = self._post_on_batch(request, object_id)
        if not isinstance(batch, CardBatch):
            return batch
        self._build_sheet(request, batch)
        return HttpResponseRedirect(self._batch_url(batch))

    # -- the operations, shared by the buttons and the list actions -----------------------------

    def _resume(self, request: HttpRequest, batch: CardBatch) -> bool:
        before = batch.status
        try:
            if before == CardBatch.Status.RUNNING and not batches.batch_is_stalled(batch):
                self.message_user(request, f"{batch}: a worker is generating it; nothing to resume.", messages.INFO)
                return False
            batch = batches.batch_resume(batch=batch, actor=request.user)
        except LoyaltyError as exc:
            self.message_user(request, f"Batch {batch.pk}: {exc.message}", messages.ERROR)
            return False
        if before == CardBatch.Status.DONE:
            self.message_user(request, f"{batch}: already complete.", messages.INFO)
            return False
        self.message_user(request, f"{batch}: resumed.", messages.SUCCESS)
        return True

    def _discard(self, request: HttpRequest, batch: CardBatch) -> bool:
        before = batch.status
        try:
            batch = batches.batch_discard(batch=batch, actor=request.user)
        except LoyaltyError as exc:
            self.message_user(request, f"Batch {batch.pk}: {exc.message}", messages.ERROR)
            return False
        if before != CardBatch.Status.DISCARDED:
            self.message_user(request, f"{batch}: its stock cards are void.", messages.SUCCESS)
        return True

    def _build_sheet(self, request: HttpRequest, batch: CardBatch) -> bool:
        try:
            batch = batches.batch_sheet_request(batch=batch, actor=request.user)
        except LoyaltyError as exc:
            self.message_user(request, f"Batch {batch.pk}: {exc.message}", messages.ERROR)
            return False
        state = {
            CardBatch.SheetStatus.READY: "the PDF is ready",
            CardBatch.SheetStatus.FAILED: f"the PDF failed ({batch.sheet_error or 'see the logs'})",
        }.get(batch.sheet_status, "the PDF is being built")
        level = messages.ERROR if batch.sheet_status == CardBatch.SheetStatus.FAILED else messages.SUCCESS
        self.message_user(request, f"{batch}: {state}.", level)
        return True

    @admin.action(description="Resume selected batches", permissions=["add"])
    def resume_batches(self, request: HttpRequest, queryset: QuerySet) -> None:
        for batch in queryset.order_by("pk"):
            self._resume(request, batch)

    @admin.action(description="Discard selected batches (their cards become void)", permissions=["add"])
    def discard_batches(self, request: HttpRequest, queryset: QuerySet) -> None:
        for batch in queryset.order_by("pk"):
            self._discard(request, batch)

    @admin.action(description="Build the PDF sheets of selected batches", permissions=["add"])
    def build_sheets(self, request: HttpRequest, queryset: QuerySet) -> None:
        for batch in queryset.order_by("pk"):
            self._build_sheet(request, batch)
