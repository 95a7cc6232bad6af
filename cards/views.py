"""Staff views of the cards app: a card's barcode and QR images, and a batch's progress
fragment (htmx), CSV and PDF downloads.

The batch views are mounted by the CardBatch admin (`batch_admin.get_urls`, wrapped in
`admin_site.admin_view`); the image views by `cards/urls.py` for staff until the portal
serves them to the card's owner. Reads only: writes go through `cards.batches`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling

from loyalty import staff_scope

from . import batches, numbers
from .models import Card, CardBatch
from .printing import batch_csv_rows, card_barcode_svg, card_qr_svg

BATCH_PERMISSION = "cards.add_cardbatch"
PROGRESS_TEMPLATE = "admin/cards/cardbatch/_progress.html"


# --------------------------------------------------------------------------------------------
# One card's images


def _existing_number(request: HttpRequest, number: str) -> str:
    """The normalized number of an existing card of the user's programs, else 404 (a malformed
    one without a query)."""
    normalized = numbers.normalize(number)
    cards = staff_scope.scope(Card.objects.filter(number=normalized), "program", request.user)
    if not numbers.is_well_formed(normalized) or not cards.exists():
        raise Http404("No such card.")
    return normalized


def _svg(body: str) -> HttpResponse:
    response = HttpResponse(body, content_type="image/svg+xml")
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@staff_member_required
@permission_required("cards.view_card", raise_exception=True)
@cache_control(private=True, max_age=3600)
def card_qr_view(request: HttpRequest, number: str) -> HttpResponse:
    """The card's QR code (SVG). Queries: 1."""
    return _svg(card_qr_svg(_existing_number(request, number)))


@require_GET
@staff_member_required
@permission_required("cards.view_card", raise_exception=True)
@cache_control(private=True, max_age=3600)
def card_barcode_view(request: HttpRequest, number: str) -> HttpResponse:
    """The card's Code128 barcode (SVG). Queries: 1."""
    return _svg(card_barcode_svg(_existing_number(request, number)))


# --------------------------------------------------------------------------------------------
# A batch's progress and downloads (mounted in the admin; the admin checks staff login)


def _batches(request: HttpRequest) -> QuerySet[CardBatch]:
    """The batches of the user's programs (another program's batch: 404)."""
    return staff_scope.scope(CardBatch.objects.all(), "program", request.user)


def batch_progress_context(batch: CardBatch) -> dict[str, object]:
    """What the progress fragment shows; `polling` while generation or the PDF is pending.
    Queries: 1 when the batch is running (is its worker alive?), else none."""
    generating = batch.status in (CardBatch.Status.PENDING, CardBatch.Status.RUNNING)
    return {
        "batch": batch,
        "polling": generating or batch.sheet_status == CardBatch.SheetStatus.PENDING,
        "stalled": batches.batch_is_stalled(batch),
        "progress_url": reverse("admin:cards_cardbatch_progress", args=[batch.pk]),
    }


@require_GET
@permission_required("cards.view_cardbatch", raise_exception=True)
def batch_progress_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    """The progress bar fragment polled by htmx every second. Once nothing is pending any
    more it answers 286 (htmx stops polling) and asks the page to reload, so the buttons of
    the final state appear. Queries: 1-2."""
    batch = get_object_or_404(_batches(request).select_related("program"), pk=batch_id)
    context = batch_progress_context(batch)
    html = render_to_string(PROGRESS_TEMPLATE, context, request=request)
    if context["polling"]:
        return HttpResponse(html)
    response = HttpResponseStopPolling(html)
    if request.htmx:
        response["HX-Refresh"] = "true"
    return response


class _Echo:
    """A file-like whose write returns the line: csv.writer then yields strings to stream."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(batch: CardBatch) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for row in batch_csv_rows(batch):
        yield writer.writerow(row)


@require_GET
@permission_required(BATCH_PERMISSION, raise_exception=True)
def batch_csv_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    """The printer's CSV (number, PIN, batch, program) of a done batch, streamed: rows are
    read with a server-side cursor while they are sent. 404 unless the batch is done."""
    batch = get_object_or_404(_batches(request).select_related("program"), pk=batch_id)
    if batch.status != CardBatch.Status.DONE:
        raise Http404("The batch is not complete.")
    response = StreamingHttpResponse(_csv_lines(batch), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="card-batch-{batch.pk}.csv"'
    response["Cache-Control"] = "no-store"  # it holds claim PINs
    return response


@require_GET
@permission_required(BATCH_PERMISSION, raise_exception=True)
def batch_sheet_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    """The stored PDF sheet of the batch; 404 until it is ready."""
    batch = get_object_or_404(_batches(request), pk=batch_id)
    if batch.sheet_status != CardBatch.SheetStatus.READY or not batch.sheet:
        raise Http404("The PDF sheet is not ready.")
    try:
        handle = batch.sheet.open("rb")
    except FileNotFoundError as exc:
        raise Http404("The PDF file is missing; build it again.") from exc
    response = FileResponse(
        handle, as_attachment=True, filename=f"card-batch-{batch.pk}.pdf", content_type="application/pdf"
    )
    response["Cache-Control"] = "no-store"
    return response
