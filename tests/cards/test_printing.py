"""Printer outputs of a batch (CSV rows, PDF sheet) and a card's SVG images."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from pypdf import PdfReader

from cards import batches, errors, numbers, printing
from cards.models import Card, CardBatch
from cards.tasks import render_batch_sheet_task
from tests.loyalty.factories import StaffFactory

from .factories import CardFactory

pytestmark = pytest.mark.django_db


def _make_batch(program, quantity, staff, capture) -> CardBatch:
    with capture(execute=True):
        batch = batches.batch_create(program=program, quantity=quantity, actor=staff)
    batch.refresh_from_db()
    return batch


@pytest.fixture
def batch_of_23(program, staff, django_capture_on_commit_callbacks):
    program.name = "Café Bleu Rewards"
    program.save()
    return _make_batch(program, 23, staff, django_capture_on_commit_callbacks)


def _numbers(batch: CardBatch) -> list[str]:
    return list(Card.objects.filter(batch=batch).order_by("id").values_list("number", flat=True))


def _pdf_text(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


# --------------------------------------------------------------------------------------------
# CSV rows


def test_csv_rows_are_header_then_number_pin_batch_program(batch_of_23):
    rows = list(printing.batch_csv_rows(batch_of_23))
    assert rows[0] == ("number", "pin", "batch", "program")
    assert [r[0] for r in rows[1:]] == _numbers(batch_of_23)
    assert all(r[1] == numbers.pin_for(r[0]) for r in rows[1:])
    assert {r[2:] for r in rows[1:]} == {(str(batch_of_23.pk), "Café Bleu Rewards")}


def test_csv_rows_are_a_generator_reading_one_query(batch_of_23, django_assert_num_queries):
    batch = CardBatch.objects.select_related("program").get(pk=batch_of_23.pk)
    rows = printing.batch_csv_rows(batch)
    assert next(rows) == printing.CSV_HEADER  # nothing read yet beyond the header
    with django_assert_num_queries(1):
        assert len(list(rows)) == 23


def test_csv_cells_cannot_become_spreadsheet_formulas(batch_of_23):
    batch_of_23.program.name = "=HYPERLINK(evil)"
    assert next(r for i, r in enumerate(printing.batch_csv_rows(batch_of_23)) if i == 1)[3] == "'=HYPERLINK(evil)"


# --------------------------------------------------------------------------------------------
# PDF sheet


def test_number_is_printed_in_groups_of_four():
    assert printing.grouped("7123456789012345") == "7123 4567 8901 2345"
    assert printing.grouped("71234567890123") == "7123 4567 8901 23"


def test_sheet_has_ten_cards_per_page_with_numbers_pins_and_program(batch_of_23):
    out = io.BytesIO()
    assert printing.render_sheet(batch_of_23, out) == 3
    pages, text = _pdf_text(out.getvalue())
    assert pages == math.ceil(23 / 10)
    assert text.count("Café Bleu Rewards") >= 23
    for number in _numbers(batch_of_23):
        assert printing.grouped(number) in text
        assert f"PIN {numbers.pin_for(number)}" in text


def test_sheet_pages_are_a4_and_hold_cr80_cards(batch_of_23):
    out = io.BytesIO()
    printing.render_sheet(batch_of_23, out)
    box = PdfReader(io.BytesIO(out.getvalue())).pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points
    assert pytest.approx(box.width) == printing.COLUMNS * printing.CARD_W + printing.GAP_X + 2 * printing.MARGIN_X
    assert printing.MARGIN_X > 0
    assert printing.MARGIN_Y > 0


@pytest.mark.skipif(
    not (shutil.which("pdftoppm") and shutil.which("zbarimg")), reason="needs poppler-utils and zbar-tools"
)
def test_sheet_barcodes_and_qr_codes_scan_back_to_the_card_numbers(batch_of_23, tmp_path):
    pdf = tmp_path / "sheet.pdf"
    with pdf.open("wb") as out:
        printing.render_sheet(batch_of_23, out)
    subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-r", "300", "-png", pdf, tmp_path / "page"], check=True)
    scanned = subprocess.run(
        ["zbarimg", "-q", "--raw", "-Sdisable", "-Scode128.enable", "-Sqrcode.enable", *tmp_path.glob("page*.png")],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    first_page = _numbers(batch_of_23)[:10]
    assert sorted(scanned) == sorted(first_page * 2)  # each number once as Code128, once as QR


def test_sheet_task_stores_the_pdf_and_marks_it_ready(batch_of_23, staff, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        batch = batches.batch_sheet_request(batch=batch_of_23, actor=staff)
    assert batch.sheet_status == CardBatch.SheetStatus.PENDING  # as returned: queued
    batch.refresh_from_db()
    assert (batch.sheet_status, batch.sheet_error) == (CardBatch.SheetStatus.READY, "")
    event = batch.events.get(kind="sheet_requested")
    assert (event.actor, event.note) == (staff, "")
    with batch.sheet.open("rb") as handle:
        pages, text = _pdf_text(handle.read())
    assert pages == 3
    assert _numbers(batch)[0][:4] in text


def test_sheet_request_queues_the_task_once_after_commit(batch_of_23, staff, django_capture_on_commit_callbacks):
    with (
        mock.patch.object(render_batch_sheet_task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        batches.batch_sheet_request(batch=batch_of_23, actor=staff)
    delay.assert_called_once_with(batch_of_23.pk)


def test_rendering_again_replaces_the_stored_pdf(batch_of_23):
    first = render_batch_sheet_task.apply(args=[batch_of_23.pk]).get()
    second = render_batch_sheet_task.apply(args=[batch_of_23.pk]).get()
    assert first["sheet_status"] == second["sheet_status"] == "ready"
    batch_of_23.refresh_from_db()
    assert batch_of_23.sheet.name == second["sheet"]
    assert batch_of_23.sheet.storage.exists(second["sheet"])
    assert first["sheet"] == second["sheet"] or not batch_of_23.sheet.storage.exists(first["sheet"])


def test_a_failing_render_marks_the_sheet_failed_with_its_error(batch_of_23, staff, django_capture_on_commit_callbacks):
    with mock.patch("cards.printing.render_sheet", side_effect=OSError("disk full")):
        batch = batches.batch_sheet_build(batch_id=batch_of_23.pk)
    assert (batch.sheet_status, batch.sheet_error) == (CardBatch.SheetStatus.FAILED, "OSError: disk full")
    # Asking again clears the error; the new render succeeds.
    with django_capture_on_commit_callbacks(execute=True):
        batches.batch_sheet_request(batch=batch, actor=staff)
    batch.refresh_from_db()
    assert (batch.sheet_status, batch.sheet_error) == (CardBatch.SheetStatus.READY, "")
    assert batch.events.get(kind="sheet_requested").note == "rebuild"


def test_the_batch_page_shows_a_failed_sheets_error(client, staff, batch_of_23):
    with mock.patch("cards.printing.render_sheet", side_effect=OSError("disk full")):
        batches.batch_sheet_build(batch_id=batch_of_23.pk)
    client.force_login(staff)
    html = client.get(reverse("admin:cards_cardbatch_change", args=[batch_of_23.pk])).content.decode()
    assert "PDF: OSError: disk full" in html


def test_an_incomplete_batch_cannot_be_printed(program, staff):
    batch = CardBatch.objects.create(program=program, quantity=5, status=CardBatch.Status.FAILED)
    with pytest.raises(errors.BatchStateInvalid) as exc:
        batches.batch_sheet_request(batch=batch, actor=staff)
    assert (exc.value.code, exc.value.details["status"]) == ("batch_state_invalid", "failed")
    assert not batch.events.exists()


def test_pdf_download_from_the_admin(client, staff, batch_of_23, django_capture_on_commit_callbacks):
    client.force_login(staff)
    url = reverse("admin:cards_cardbatch_pdf", args=[batch_of_23.pk])
    assert client.get(url).status_code == 404  # not built yet
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:cards_cardbatch_build_pdf", args=[batch_of_23.pk]))
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert 'PDF: <strong class="sheet-status-ready">Ready</strong>' in page
    assert url in page
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    pages, text = _pdf_text(b"".join(response.streaming_content))
    assert pages == 3
    assert "Café Bleu Rewards" in text


# --------------------------------------------------------------------------------------------
# One card's images


def test_card_svgs_are_valid_svg_documents():
    number = numbers.random_number("7", 16)
    for svg in (printing.card_qr_svg(number), printing.card_barcode_svg(number)):
        root = ET.fromstring(svg.encode())  # noqa: S314 (our own output)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert number in printing.card_barcode_svg(number)  # human-readable line under the bars


@pytest.mark.parametrize("kind", ["card_qr", "card_barcode"])
def test_card_image_views_serve_svg_to_staff(client, staff, kind):
    card = CardFactory()
    client.force_login(staff)
    response = client.get(reverse(f"cards:{kind}", args=[card.number]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert ET.fromstring(response.content).tag  # noqa: S314 == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("kind", ["card_qr", "card_barcode"])
def test_card_image_views_refuse_unknown_or_malformed_numbers_and_non_staff(client, staff, kind):
    card = CardFactory()
    client.force_login(staff)
    unknown = numbers.random_number("7", 16)
    assert client.get(reverse(f"cards:{kind}", args=[unknown])).status_code == 404
    assert client.get(reverse(f"cards:{kind}", args=[card.number[:-1] + "x"])).status_code == 404
    client.logout()
    assert client.get(reverse(f"cards:{kind}", args=[card.number])).status_code == 302  # to the admin login
    no_perm = StaffFactory()
    client.force_login(no_perm)
    assert client.get(reverse(f"cards:{kind}", args=[card.number])).status_code == 403
    no_perm.user_permissions.add(Permission.objects.get(codename="view_card"))
    assert client.get(reverse(f"cards:{kind}", args=[card.number])).status_code == 200
