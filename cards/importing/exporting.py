"""The member export: a program's members as CSV rows in the import's columns, in keyset pages."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from django.db import connection

from loyalty.models import Program

from .parsing import (
    CARD,
    COLUMNS,
    EXPORT_CHUNK,
    MEMBER,
    escape_formula,
)

# --------------------------------------------------------------------------------------------
# Export


_EXPORT_SQL = f"""
SELECT m.id, m.external_id, m.email, m.first_name, m.last_name, m.birthday,
       (SELECT c.number FROM {CARD} c WHERE c.member_id = m.id AND c.status = 'active'
        ORDER BY c.kind = 'physical' DESC, c.id DESC LIMIT 1),
       greatest(m.available, 0)
FROM {MEMBER} m
WHERE m.program_id = %(program)s AND m.id > %(after)s {{anonymous}}
ORDER BY m.id LIMIT %(limit)s
"""


def member_export_rows(
    *, program: Program, include_anonymous: bool = False, chunk_size: int = EXPORT_CHUNK
) -> Iterator[list[str]]:
    """The program's members as import rows (`COLUMNS` order), formula-escaped, by id. Keyset
    pages of `chunk_size`: one short indexed query each, so memory stays bounded and no
    transaction stays open while the client downloads. Members without an external id
    (anonymous card holders) only with `include_anonymous` (the import cannot match them)."""
    sql = _EXPORT_SQL.replace("{anonymous}", "" if include_anonymous else "AND m.external_id IS NOT NULL")
    after = 0
    while True:
        with connection.cursor() as cur:
            cur.execute(sql, {"program": program.id, "after": after, "limit": chunk_size})
            page = cur.fetchall()
        for member_id, external_id, email, first, last, birthday, card, available in page:
            yield [
                escape_formula(external_id or ""),
                escape_formula(email),
                escape_formula(first),
                escape_formula(last),
                birthday.isoformat() if birthday else "",
                card or "",
                str(available),
                "",
            ]
            after = member_id
        if len(page) < chunk_size:
            return


def member_export_csv(*, program: Program, include_anonymous: bool = False) -> Iterator[str]:
    """The export as CSV text pieces for a `StreamingHttpResponse`: a UTF-8 BOM (Excel),
    the header, then the rows in pieces of `EXPORT_CHUNK` lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    yield "\ufeff" + buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    rows = member_export_rows(program=program, include_anonymous=include_anonymous)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % EXPORT_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
