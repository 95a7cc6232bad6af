"""Outputs of a card batch for the printer and images of one card.

- `batch_csv_rows`: the rows of the printer's CSV (number, PIN, batch, program), read with a
  server-side cursor so a batch of millions streams in flat memory.
- `render_sheet`: printable PDF, CR80 cards (85.60 x 53.98 mm) 10-up on A4, each with the
  program's name, the number in groups of four, the claim PIN, a Code128 barcode and a QR
  code. The QR is drawn from segno's module matrix as one path per card (dark runs merged per
  row): reportlab's QrCodeWidget is about ten times slower (docs: LIBRARIES.md).
- `card_qr_svg` / `card_barcode_svg`: standalone SVG images of one card for the portal.

Reads only; nothing here writes to the database.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO

import segno
from barcode import Code128 as SvgCode128
from barcode.writer import SVGWriter
from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.colors import Color, black
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from .models import Card, CardBatch
from .numbers import pin_for

CSV_HEADER = ("number", "pin", "batch", "program")
CSV_CHUNK = 5_000

# Sheet geometry (ISO/IEC 7810 ID-1 = CR80 cards on A4 portrait).
CARD_W, CARD_H = 85.60 * mm, 53.98 * mm
CORNER = 3.18 * mm
COLUMNS, ROWS = 2, 5
PER_PAGE = COLUMNS * ROWS
GAP_X, GAP_Y = 5 * mm, 3 * mm  # space between cards for the cutter
PAGE_W, PAGE_H = A4
MARGIN_X = (PAGE_W - COLUMNS * CARD_W - (COLUMNS - 1) * GAP_X) / 2
MARGIN_Y = (PAGE_H - ROWS * CARD_H - (ROWS - 1) * GAP_Y) / 2
PAD = 4 * mm
QR_SIZE = 22 * mm
BAR_WIDTH = 0.33 * mm  # Code128 X-dimension; a 19-digit number stays under 60 mm
BAR_HEIGHT = 11 * mm
CUT_LINE = Color(0.6, 0.6, 0.6)
GREY = Color(0.35, 0.35, 0.35)


def grouped(number: str) -> str:
    """`7123456789012345` -> `7123 4567 8901 2345` (as printed and as people read it out)."""
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def _batch_numbers(batch: CardBatch) -> Iterator[str]:
    # Server-side cursor (PostgreSQL): CSV_CHUNK rows per fetch, in creation order.
    return Card.objects.filter(batch_id=batch.pk).order_by("id").values_list("number", flat=True).iterator(CSV_CHUNK)


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet must not evaluate as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def batch_csv_rows(batch: CardBatch) -> Iterator[tuple[str, ...]]:
    """The header, then one row per card of the batch: number, PIN, batch id, program name.
    A generator: one query through a server-side cursor, memory independent of the size."""
    yield CSV_HEADER
    batch_id = str(batch.pk)
    program = _csv_safe(batch.program.name)
    for number in _batch_numbers(batch):
        yield (number, pin_for(number), batch_id, program)


def _fit(text: str, font: str, size: float, width: float) -> str:
    """`text`, cut with an ellipsis to fit `width` points."""
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"


def _draw_qr(canvas: Canvas, number: str, x: float, y: float, size: float) -> None:
    """The QR code of `number` in a `size` square at (x, y): one filled path made of one
    rectangle per run of dark modules in each row, in module units (short integers keep the
    PDF small). A 2-module margin inside the square plus the card's white space around it
    give the quiet zone."""
    matrix = segno.make_qr(number).matrix
    n = len(matrix)
    module = size / (n + 4)
    canvas.saveState()
    # Origin at the symbol's top-left module, one unit per module, rows going down.
    canvas.transform(module, 0, 0, -module, x + 2 * module, y + size - 2 * module)
    path = canvas.beginPath()
    for r, row in enumerate(matrix):
        c = 0
        while c < n:
            if row[c]:
                start = c
                while c < n and row[c]:
                    c += 1
                path.rect(start, r, c - start, 1)
            else:
                c += 1
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.restoreState()


def _draw_card(canvas: Canvas, x: float, y: float, number: str, program_name: str) -> None:
    canvas.setStrokeColor(CUT_LINE)
    canvas.setLineWidth(0.25)
    canvas.roundRect(x, y, CARD_W, CARD_H, CORNER, stroke=1, fill=0)
    canvas.setFillColor(black)

    text_w = CARD_W - 2 * PAD - QR_SIZE - 2 * mm
    top = y + CARD_H - PAD
    canvas.setFont("Helvetica-Bold", 11)
    canvas.drawString(x + PAD, top - 9, program_name)
    canvas.setFont("Courier-Bold", 12)
    canvas.drawString(x + PAD, top - 12 * mm, _fit(grouped(number), "Courier-Bold", 12, text_w))
    canvas.setFont("Helvetica", 9)
    canvas.drawString(x + PAD, top - 17 * mm, f"PIN {pin_for(number)}")

    _draw_qr(canvas, number, x + CARD_W - PAD - QR_SIZE, top - QR_SIZE, QR_SIZE)
    Code128(number, barWidth=BAR_WIDTH, barHeight=BAR_HEIGHT, quiet=False).drawOn(canvas, x + PAD, y + PAD)


def _slot(index: int) -> tuple[float, float]:
    """Bottom-left corner of the `index`-th card on a page (row by row from the top left)."""
    row, col = divmod(index, COLUMNS)
    x = MARGIN_X + col * (CARD_W + GAP_X)
    y = PAGE_H - MARGIN_Y - (row + 1) * CARD_H - row * GAP_Y
    return x, y


def render_sheet(batch: CardBatch, out_file: IO[bytes]) -> int:
    """Write the batch's printable PDF to `out_file` (10 cards per A4 page, in creation order)
    and return the number of pages. One query through a server-side cursor: memory stays
    flat; time is about 1.5 ms per card (docs/performance.md)."""
    program = batch.program
    name = _fit(program.name, "Helvetica-Bold", 11, CARD_W - 2 * PAD - QR_SIZE - 2 * mm)
    pages = max(1, -(-batch.created // PER_PAGE))
    canvas = Canvas(out_file, pagesize=A4, pageCompression=1, invariant=1)
    canvas.setTitle(f"{program.name}: card batch {batch.pk}")
    canvas.setAuthor("Loyalty back-office")
    canvas.setCreator("Loyalty back-office")
    page = 0
    index = PER_PAGE  # force a page start
    for number in _batch_numbers(batch):
        if index == PER_PAGE:
            if page:
                canvas.showPage()
            page += 1
            index = 0
            canvas.setFont("Helvetica", 6)
            canvas.setFillColor(GREY)
            canvas.drawString(MARGIN_X, MARGIN_Y / 2, f"{program.name} · batch {batch.pk} · sheet {page}/{pages}")
        _draw_card(canvas, *_slot(index), number, name)
        index += 1
    if page == 0:  # an empty batch still makes a valid one-page document
        canvas.setFont("Helvetica", 10)
        canvas.drawString(MARGIN_X, PAGE_H - MARGIN_Y, f"Batch {batch.pk} has no cards.")
        page = 1
    canvas.showPage()
    canvas.save()
    return page


def card_qr_svg(number: str) -> str:
    """A standalone SVG of the card number's QR code (scale 4, standard quiet zone)."""
    out = io.BytesIO()
    segno.make_qr(number).save(out, kind="svg", scale=4, border=4, xmldecl=False, title=number)
    return out.getvalue().decode()


def card_barcode_svg(number: str) -> str:
    """A standalone SVG of the card number as a Code128 barcode, with the number under it."""
    options = {"module_width": 0.3, "module_height": 12.0, "quiet_zone": 4.0, "font_size": 8, "text_distance": 4.0}
    return SvgCode128(number, writer=SVGWriter()).render(options).decode()
