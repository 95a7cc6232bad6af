"""Reading a members CSV and checking each row on its own (no database): the columns, the
row and error types shared by the other modules, and the formula escape of the export.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from loyalty.models import REFERRAL_ALPHABET, Member

from .. import numbers
from ..models import Card, CardEvent

COLUMNS = ("external_id", "email", "first_name", "last_name", "birthday", "card_number", "opening_balance", "tier")
PROFILE_COLUMNS = ("email", "first_name", "last_name", "birthday")
MAX_LENGTHS = {"external_id": 255, "email": 254, "first_name": 150, "last_name": 150, "tier": 100}
ERRORS_KEPT = 1000  # stored on the MemberImport row; `error_count` has the total
CHANGES_KEPT = 100  # sample of updated rows shown in the preview
EXPORT_CHUNK = 5000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

MEMBER = Member._meta.db_table
CARD = Card._meta.db_table
CARD_EVENT = CardEvent._meta.db_table
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INT = re.compile(r"[+-]?\d+")
# Unbiased: 256 is a multiple of the alphabet's 32 letters.
_REFERRAL_TABLE = bytes(REFERRAL_ALPHABET[b % len(REFERRAL_ALPHABET)].encode()[0] for b in range(256))
assert 256 % len(REFERRAL_ALPHABET) == 0


def max_rows() -> int:
    return getattr(settings, "MEMBER_IMPORT_MAX_ROWS", 1_000_000)


# --------------------------------------------------------------------------------------------
# Parsing and row checks (no database)


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem of one row: `line` is the file's line (header = 1), `field` a column name
    ("" for the row as a whole)."""

    line: int
    field: str
    message: str
    value: str = ""

    def as_dict(self) -> dict[str, Any]:
        # JSON in PostgreSQL cannot hold NUL: shown as the replacement character.
        return {
            "line": self.line,
            "field": self.field.replace("\x00", "\ufffd"),
            "message": self.message,
            "value": self.value.replace("\x00", "\ufffd"),
        }


@dataclass(slots=True)
class MemberRow:
    line: int
    external_id: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    birthday: dt.date | None = None
    card_number: str = ""
    opening_balance: int = 0
    tier: str = ""


@dataclass
class ParsedFile:
    """The rows that passed the per-row checks, and the errors of the others."""

    columns: tuple[str, ...] = ()
    delimiter: str = ","
    rows: list[MemberRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    row_count: int = 0
    tiers: Counter = field(default_factory=Counter)

    def has(self, column: str) -> bool:
        return column in self.columns


def unescape_formula(value: str) -> str:
    """Undo `escape_formula`: "'=x" -> "=x" (the apostrophe spreadsheets show as a text marker)."""
    if len(value) > 1 and value[0] == "'" and value[1] in "=+-@\t\r":
        return value[1:]
    return value


def escape_formula(value: str) -> str:
    """A cell a spreadsheet would run as a formula gets an apostrophe in front (OWASP CSV injection)."""
    if value and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _decode(data: bytes) -> tuple[str | None, RowError | None]:
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, RowError(line, "", f"Not UTF-8 text (byte {exc.start + 1}); save the file as CSV UTF-8.")


def _header_name(raw: str) -> str:
    return raw.strip().lower().replace(" ", "_").replace("-", "_")


def member_csv_parse(data: bytes) -> ParsedFile:
    """Read the file and check each row on its own (formats, lengths, duplicates within the
    file). Never raises on bad input: every problem becomes a `RowError`. No queries."""
    parsed = ParsedFile()
    text, error = _decode(data)
    if error is not None:
        parsed.errors.append(error)
        return parsed
    assert text is not None
    first_line = text[: text.find("\n")] if "\n" in text else text
    parsed.delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=parsed.delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        parsed.errors.append(RowError(1, "", f"Unreadable header line: {exc}."))
        return parsed
    if not header or not any(h.strip() for h in header):
        parsed.errors.append(RowError(1, "", "The file is empty: the first line must name the columns."))
        return parsed
    names = [_header_name(h) for h in header]
    seen: set[str] = set()
    for name in names:
        if name not in COLUMNS:
            parsed.errors.append(RowError(1, name, f"Unknown column (the columns are: {', '.join(COLUMNS)}).", name))
        elif name in seen:
            parsed.errors.append(RowError(1, name, "This column appears twice.", name))
        seen.add(name)
    if "external_id" not in seen:
        parsed.errors.append(RowError(1, "external_id", "The required column external_id is missing."))
        return parsed
    parsed.columns = tuple(n for n in dict.fromkeys(names) if n in COLUMNS)
    positions = [(i, n) for i, n in enumerate(names) if n in COLUMNS and names.index(n) == i]
    _parse_rows(parsed, reader, len(names), positions)
    if parsed.row_count == 0 and not parsed.errors:
        parsed.errors.append(RowError(1, "", "The file has no data rows."))
    return parsed


def _parse_rows(parsed: ParsedFile, reader: Any, width: int, positions: list[tuple[int, str]]) -> None:
    errors = parsed.errors
    today = timezone.localdate()
    limit = settings.LOYALTY_MAX_POINTS_PER_POST
    cap = max_rows()
    first_line_of: dict[str, int] = {}
    card_line_of: dict[str, int] = {}
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(line, "", f"Unreadable row: {exc}."))
            break
        start, line = line, reader.line_num + 1
        if not cells or not any(c.strip() for c in cells):
            continue  # blank line
        parsed.row_count += 1
        if parsed.row_count > cap:
            errors.append(RowError(start, "", f"More than {cap} rows: split the file."))
            break
        if len(cells) != width:
            errors.append(RowError(start, "", f"Expected {width} values, found {len(cells)}."))
            continue
        row = MemberRow(line=start, external_id="")
        bad = False
        for index, name in positions:
            raw = unescape_formula(cells[index].strip())
            problem = _set_field(row, name, raw, today, limit)
            if problem is not None:
                errors.append(RowError(start, name, problem, raw[:100]))
                bad = True
        if row.external_id:
            first = first_line_of.setdefault(row.external_id, start)
            if first != start:
                errors.append(
                    RowError(start, "external_id", f"Duplicate external_id: also on line {first}.", row.external_id)
                )
                bad = True
        if row.card_number:
            first = card_line_of.setdefault(row.card_number, start)
            if first != start:
                errors.append(
                    RowError(start, "card_number", f"Card number used twice: also on line {first}.", row.card_number)
                )
                bad = True
        if row.tier:
            parsed.tiers[row.tier] += 1
        if not bad:
            parsed.rows.append(row)


def _set_field(row: MemberRow, name: str, value: str, today: dt.date, limit: int) -> str | None:
    """Check one cell and store it on `row`; the reason when it is bad."""
    if "\x00" in value:
        return "Contains a NUL character."
    longest = MAX_LENGTHS.get(name)
    if longest is not None and len(value) > longest:
        return f"Longer than {longest} characters."
    if name == "external_id":
        if not value:
            return "external_id is required."
        if not value.isprintable():
            return "Contains control characters."
        row.external_id = value
    elif name == "email":
        if value:
            value = value.lower()
            try:
                validate_email(value)
            except ValidationError:
                return "Not a valid email address."
        row.email = value
    elif name == "birthday":
        if value:
            if not _DATE.fullmatch(value):
                return "Not a date in the form YYYY-MM-DD."
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                return "Not a valid date."
            if day > today:
                return "The birthday is in the future."
            if day.year < 1900:
                return "The birthday is before 1900."
            row.birthday = day
    elif name == "card_number":
        if value:
            number = numbers.normalize(value)
            if not number.isdigit():
                return "A card number has digits only."
            if not 8 <= len(number) <= 32:
                return "A card number has 8 to 32 digits."
            if not numbers.is_well_formed(number):
                return "Bad check digit: this is not a valid card number."
            row.card_number = number
    elif name == "opening_balance":
        if value:
            if not _INT.fullmatch(value):
                return "Not a whole number of points."
            points = int(value)
            if points < 0:
                return "The opening balance must not be negative."
            if points > limit:
                return f"At most {limit} points."
            row.opening_balance = points
    elif name == "tier":
        row.tier = value
    else:  # first_name, last_name
        setattr(row, name, value)
    return None
