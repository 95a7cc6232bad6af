"""Celery tasks of the cards app: thin, idempotent wrappers of the batch services.

Both take a batch id and may run twice (a redelivery after a worker died, a resume): the
generation continues from the cards already committed, or does nothing when done or when
another worker holds the batch; the sheet is rendered again with the same numbers and PINs.
"""

from __future__ import annotations

from celery import shared_task

from . import batches


@shared_task(name="cards.generate_batch")
def generate_batch_task(batch_id: int) -> dict[str, object]:
    batch = batches.batch_generate(batch_id=batch_id)
    return {"batch": batch.pk, "status": batch.status, "created": batch.created}


@shared_task(name="cards.render_batch_sheet")
def render_batch_sheet_task(batch_id: int) -> dict[str, object]:
    batch = batches.batch_sheet_build(batch_id=batch_id)
    return {"batch": batch.pk, "sheet_status": batch.sheet_status, "sheet": batch.sheet.name}
