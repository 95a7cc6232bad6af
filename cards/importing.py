"""Member import from CSV (dry run, row errors, all-or-nothing apply) and member export to CSV.

The file
    UTF-8 (a BOM is dropped), comma- or semicolon-separated (whichever the header line holds
    more of), a header line naming the columns in any order: `external_id` (required),
    `email`, `first_name`, `last_name`, `birthday` (YYYY-MM-DD), `card_number`,
    `opening_balance` (whole number >= 0), `tier`. A column the file leaves out is left
    untouched on existing members; a blank cell in a column it has clears the field. A leading
    apostrophe before = + - @ (the formula escape this module's export writes) is dropped, so
    an export imports back unchanged. Line numbers are the file's physical lines (header = 1).

Emails: one member per email in a program, case-insensitively. An email on an earlier row of
the file, or of another member of the program (not the row's own), is a row error of the dry
run, so the file is refused at apply (checked again then, under the import's lock).

What a row does (matched by `external_id` within the program)
    - unknown external id: a new member (channel "import"), its opening balance credited;
    - known external id: the profile columns the file has are compared; the member is
      "updated" when one differs or a card is to be assigned, else "unchanged" (nothing is
      written). The opening balance of an existing member is ignored (warning).

Opening balances are posted only for members the import creates, never twice: the credit
(`loyalty.services.points_credit_bulk`, reason "Opening balance (import #<id>)", actor = the
staff user) runs in the transaction that inserts the member rows, for exactly the rows that
INSERT returned; a member row is created once (unique program + external id), so re-importing
the file, or another file with the same external ids, finds the member and posts nothing.

Card numbers: must be digits with a valid Luhn check digit (8 to 32 digits; no prefix check,
so numbers printed by the old system are accepted). A number that is unassigned stock of the
program is assigned to the row's member; a number unknown to the database is registered as a
new physical card of the program, active, assigned to the member (cards migrated from the old
system); a number already assigned to the same member is unchanged. Refused: a card of another
program, a card assigned to another member, a blocked or void card, the same number twice in
the file. An existing member who gets a card keeps the cards they had. Every card the import
assigns, registers or issues gets its `CardEvent` (`imported`, or `issued` for a digital card;
actor = the staff user; note "import #<id>") from the statement that changes the card.

Digital cards and signals: `member_enrolled` is *not* sent for imported members (it would run
the cards receiver, and every later welcome reaction, 100,000 times, one member at a time, and
a migrated customer is not a new sign-up). Instead a new member without a card number gets a
digital card from one set-based INSERT (random numbers, ON CONFLICT top-up), and
`members_imported` is sent once after commit with the ids of the created members, for apps
that want to react in bulk.

Tiers: the `tier` column is accepted and checked for length only; it is stored nowhere yet
(the kept upload still has it) and the dry run warns "tier ignored until tiers exist", with
the names and counts in `MemberImport.summary["tiers"]`.

All or nothing: `member_import_apply` re-reads the kept upload (checksum compared), re-validates
it under a per-program advisory lock with the cards in the file locked, and writes everything
in one transaction; any bad row, or a conflict found while writing, writes nothing and marks
the import failed with its errors.

Speed: rows are checked in Python (about 10 us a row); look-ups and writes are set-based: the
members of the file are read with one query, new members COPY'd into a temporary table and
inserted with one INSERT ... SELECT, changed ones updated with one UPDATE ... FROM, cards
assigned/registered/issued with one statement each, balances credited with one statement.
bench/bench_import.py measures 100,000 rows (docs/performance.md).

The export streams one program's members (keyset pages of `EXPORT_CHUNK` by id, one short
query each: no long transaction, no server-side cursor, memory bounded) with the import's
columns; `opening_balance` is the member's available balance (a debt shows as 0) and
`card_number` the member's newest active card, physical first. Text cells starting with
= + - @ tab or CR are prefixed with an apostrophe (CSV formula injection).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from loyalty import errors as loyalty_errors
from loyalty.models import REFERRAL_ALPHABET, Member, Program
from loyalty.services import points_credit_bulk

from . import numbers
from .models import Card, CardEvent, MemberImport

# kwargs: program, member_import, member_ids (the members the import created). After commit.
members_imported = Signal()

COLUMNS = ("external_id", "email", "first_name", "last_name", "birthday", "card_number", "opening_balance", "tier")
PROFILE_COLUMNS = ("email", "first_name", "last_name", "birthday")
MAX_LENGTHS = {"external_id": 255, "email": 254, "first_name": 150, "last_name": 150, "tier": 100}
ERRORS_KEPT = 1000  # stored on the MemberImport row; `error_count` has the total
CHANGES_KEPT = 100  # sample of updated rows shown in the preview
EXPORT_CHUNK = 5000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TIER_WARNING = "tier ignored until tiers exist"

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


# --------------------------------------------------------------------------------------------
# The plan: what the file would do to the database (reads only, or locks cards on apply)


@dataclass
class ImportPlan:
    parsed: ParsedFile
    errors: list[RowError]
    warnings: list[str]
    new: list[MemberRow]
    updates: list[tuple[int, MemberRow]]  # (member id, row): profile columns changed
    updated: int  # existing members with a changed profile column or a card to receive
    unchanged: int
    assign: list[tuple[int, MemberRow]]  # (card id, row): unassigned stock to assign
    register: list[MemberRow]  # rows whose card number is unknown: a new physical card
    changes: list[dict[str, Any]]  # sample of updated rows for the preview
    existing_ids: dict[str, int]  # external id -> member id of the file's known members

    @property
    def opening_rows(self) -> list[MemberRow]:
        return [r for r in self.new if r.opening_balance > 0]

    @property
    def opening_total(self) -> int:
        return sum(r.opening_balance for r in self.new)

    @property
    def digital_count(self) -> int:
        return sum(1 for r in self.new if not r.card_number)

    def summary(self) -> dict[str, Any]:
        return {
            "columns": list(self.parsed.columns),
            "delimiter": self.parsed.delimiter,
            "cards_assigned": len(self.assign),
            "cards_registered": len(self.register),
            "digital_cards": self.digital_count,
            "tiers": dict(self.parsed.tiers.most_common(50)),
            "changes": self.changes,
        }


def member_import_plan(*, program: Program, parsed: ParsedFile, lock_cards: bool = False) -> ImportPlan:
    """Match the parsed rows to the program's members and cards: new / updated / unchanged,
    card assignments and registrations, and the errors only the database can tell (a card of
    another program, assigned to someone else, blocked or void; an email of another member).
    With `lock_cards` (inside the apply transaction) the file's existing cards are locked FOR
    UPDATE in id order. Queries: 3 (members of the file, their emails, cards of the file)."""
    rows = parsed.rows
    errors = list(parsed.errors)
    existing = _members_by_external_id(program, [r.external_id for r in rows])
    cards = _cards_by_number([r.card_number for r in rows if r.card_number], lock=lock_cards)
    new: list[MemberRow] = []
    updates: list[tuple[int, MemberRow]] = []
    assign: list[tuple[int, MemberRow]] = []
    register: list[MemberRow] = []
    changes: list[dict[str, Any]] = []
    updated = unchanged = ignored_balances = 0
    profile = [c for c in PROFILE_COLUMNS if parsed.has(c)]
    email_owners = _members_by_email(program, [r.email for r in rows if r.email])
    email_line: dict[str, int] = {}
    for row in rows:
        current = existing.get(row.external_id)
        if row.email:
            problem = _email_problem(row, email_line, email_owners)
            if problem is not None:
                errors.append(RowError(row.line, "email", problem, row.email))
                continue
        card_action = None
        if row.card_number:
            card = cards.get(row.card_number)
            problem = _card_problem(program, row, card)
            if problem is not None:
                errors.append(RowError(row.line, "card_number", problem, row.card_number))
                continue
            if card is None:
                card_action = "register"
            elif card["status"] == Card.Status.UNASSIGNED:
                card_action = "assign"
        if current is None:
            new.append(row)
        else:
            if row.opening_balance:
                ignored_balances += 1
            changed = {
                c: [_shown(current[c]), _shown(getattr(row, c))] for c in profile if current[c] != getattr(row, c)
            }
            if changed:
                updates.append((current["id"], row))
            if card_action is not None:
                changed["card_number"] = ["", row.card_number]
            if not changed:
                unchanged += 1
                continue
            updated += 1
            if len(changes) < CHANGES_KEPT:
                changes.append({"line": row.line, "external_id": row.external_id, "fields": changed})
        if card_action == "register":
            register.append(row)
        elif card_action == "assign":
            assign.append((cards[row.card_number]["id"], row))
    errors.sort(key=lambda e: (e.line, COLUMNS.index(e.field) if e.field in COLUMNS else -1))
    warnings = []
    if parsed.tiers:
        warnings.append(
            f"{TIER_WARNING}: {sum(parsed.tiers.values())} rows name a tier "
            f"({', '.join(sorted(parsed.tiers)[:10])}{', ...' if len(parsed.tiers) > 10 else ''})."
        )
    if ignored_balances:
        warnings.append(
            f"{ignored_balances} rows of existing members carry an opening balance: it is credited only "
            "to members the import creates, so it is ignored for them."
        )
    return ImportPlan(
        parsed=parsed,
        errors=errors,
        warnings=warnings,
        new=new,
        updates=updates,
        updated=updated,
        unchanged=unchanged,
        assign=assign,
        register=register,
        changes=changes,
        existing_ids={k: v["id"] for k, v in existing.items()},
    )


def _shown(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else ("" if value is None else str(value))


def _card_problem(program: Program, row: MemberRow, card: dict[str, Any] | None) -> str | None:
    if card is None:
        return None
    if card["program_id"] != program.id:
        return "This card belongs to another program."
    if card["status"] == Card.Status.BLOCKED:
        return "This card is blocked."
    if card["status"] == Card.Status.VOID:
        return "This card is void (its batch was discarded)."
    if card["status"] == Card.Status.UNASSIGNED:
        return None
    if card["external_id"] != row.external_id:
        return f"This card is assigned to another member (member #{card['member_id']})."
    return None


def _email_problem(row: MemberRow, email_line: dict[str, int], owners: dict[str, tuple[int, str | None]]) -> str | None:
    """Why the row's email cannot be its member's: used by an earlier row of the file, or by
    another member of the program (one member per email, case-insensitively: emails are
    lowercased when parsed)."""
    first = email_line.setdefault(row.email, row.line)
    if first != row.line:
        return f"Duplicate email: also on line {first}."
    owner = owners.get(row.email)
    if owner is not None and owner[1] != row.external_id:
        return f"Another member of this program has this email (member #{owner[0]})."
    return None


def _members_by_email(program: Program, emails: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    """lower(email) -> (member id, external id) of the program's members with these emails
    (the unique index member_unique_email; `email <> ''` is its condition)."""
    if not emails:
        return {}
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT lower(m.email), m.id, m.external_id FROM {MEMBER} m WHERE m.program_id = %s "
            "AND m.email <> '' AND lower(m.email) = ANY(%s::text[])",
            [program.id, list(set(emails))],
        )
        return {r[0]: (r[1], r[2]) for r in cur.fetchall()}


def _members_by_external_id(program: Program, external_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not external_ids:
        return {}
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT m.id, m.external_id, m.email, m.first_name, m.last_name, m.birthday FROM {MEMBER} m "
            "JOIN unnest(%s::text[]) AS f(external_id) ON m.external_id = f.external_id WHERE m.program_id = %s",
            [list(external_ids), program.id],
        )
        names = ("id", "external_id", "email", "first_name", "last_name", "birthday")
        return {r[1]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def _cards_by_number(card_numbers: Sequence[str], *, lock: bool) -> dict[str, dict[str, Any]]:
    if not card_numbers:
        return {}
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT c.id, c.number, c.program_id, c.status, c.member_id, m.external_id FROM {CARD} c "
            f"LEFT JOIN {MEMBER} m ON m.id = c.member_id WHERE c.number = ANY(%s::text[]) ORDER BY c.id"
            + (" FOR UPDATE OF c" if lock else ""),
            [list(card_numbers)],
        )
        names = ("id", "number", "program_id", "status", "member_id", "external_id")
        return {r[1]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


# --------------------------------------------------------------------------------------------
# Dry run and apply


def _checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _counts(plan: ImportPlan) -> dict[str, Any]:
    return {
        "rows": plan.parsed.row_count,
        "new_count": len(plan.new),
        "updated_count": plan.updated,
        "unchanged_count": plan.unchanged,
        "error_count": len(plan.errors),
        "opening_balance_total": plan.opening_total,
        "opening_balance_members": len(plan.opening_rows),
        "errors": [e.as_dict() for e in plan.errors[:ERRORS_KEPT]],
        "warnings": plan.warnings,
        "summary": plan.summary(),
    }


def member_import_dry_run(
    *, program: Program, file_name: str, data: bytes, actor: Any, now: dt.datetime | None = None
) -> MemberImport:
    """Check a CSV file against `program` and record what importing it would do, without
    writing members, cards or ledger entries. The upload is kept (default storage) on the
    returned `MemberImport`, status `dry_run` when it can be applied, `failed` when it has
    row errors (`errors`, `error_count`). Queries: 3 + 1 insert."""
    now = now or timezone.now()
    plan = member_import_plan(program=program, parsed=member_csv_parse(data))
    checksum = _checksum(data)
    plan.warnings[:0] = _applied_before(program, checksum)
    counts = _counts(plan)
    member_import = MemberImport(
        program=program,
        file_name=(file_name or "members.csv")[:255],
        checksum=checksum,
        size=len(data),
        status=MemberImport.Status.FAILED if plan.errors else MemberImport.Status.DRY_RUN,
        created_by=actor if getattr(actor, "pk", None) else None,
        created_at=now,
        **counts,
    )
    member_import.file.save(_storage_name(file_name), ContentFile(data), save=False)
    member_import.save(force_insert=True)
    return member_import


def _applied_before(program: Program, checksum: str) -> list[str]:
    before = (
        MemberImport.objects.filter(program=program, checksum=checksum, status=MemberImport.Status.APPLIED)
        .order_by("-id")
        .first()
    )
    if before is None:
        return []
    return [
        f"The same file was applied as import #{before.pk} on {before.applied_at:%Y-%m-%d %H:%M}; "
        "importing it again changes only what changed since."
    ]


def _storage_name(file_name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", (file_name or "members.csv").rsplit("/", 1)[-1])[:80].strip(".-")
    return stem or "members.csv"


class ImportNotApplicable(loyalty_errors.Conflict):
    """Only a clean dry run can be applied, once."""

    code = "import_not_applicable"


class _Refused(Exception):
    def __init__(self, errors: list[RowError], warnings: Sequence[str] = (), counts: dict[str, Any] | None = None):
        super().__init__("refused")
        self.errors = errors
        self.warnings = list(warnings)
        self.counts = counts or {}


def member_import_apply(*, member_import: MemberImport, actor: Any, now: dt.datetime | None = None) -> MemberImport:
    """Apply a dry-run import: exactly its kept file (checksum compared), checked again now,
    all of it or nothing in one transaction. Returns the import, `applied` or `failed` (with
    `errors`); raises `ImportNotApplicable` (a `Conflict`) if it was applied or refused before.

    Imports into one program run one at a time (transaction-level advisory lock); the file's
    existing cards are locked before the members (the cards app's lock order). Queries: about
    15, whatever the number of rows (set-based), plus 1 per indebted member credited."""
    if actor is None or not getattr(actor, "pk", None):
        raise loyalty_errors.InvalidInput("Applying an import needs the acting staff user.", field="actor")
    now = now or timezone.now()
    try:
        with transaction.atomic(durable=True):
            locked = MemberImport.objects.select_for_update().select_related("program").get(pk=member_import.pk)
            if locked.status != MemberImport.Status.DRY_RUN:
                raise ImportNotApplicable(
                    f"Import #{locked.pk} is {locked.get_status_display().lower()}; upload the file again.",
                    status=locked.status,
                )
            program = locked.program
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('cards.member_import:' || %s, 0))", [program.id]
                )
            data = _read_kept(locked)
            plan = member_import_plan(program=program, parsed=member_csv_parse(data), lock_cards=True)
            plan.warnings[:0] = _applied_before(program, locked.checksum)
            if plan.errors:
                raise _Refused(plan.errors, plan.warnings, _counts(plan))
            created_ids = _write(program=program, plan=plan, member_import=locked, actor=actor, now=now)
            counts = _counts(plan)
            MemberImport.objects.filter(pk=locked.pk).update(
                status=MemberImport.Status.APPLIED, applied_at=now, applied_by=actor, **counts
            )
            transaction.on_commit(
                lambda: members_imported.send(
                    sender=MemberImport, program=program, member_import=locked, member_ids=created_ids
                )
            )
    except ImportNotApplicable:
        raise
    except _Refused as refused:
        _mark_failed(member_import, refused, actor=actor, now=now)
    except (loyalty_errors.LoyaltyError, IntegrityError) as exc:
        message = exc.message if isinstance(exc, loyalty_errors.LoyaltyError) else "The database refused the import."
        _mark_failed(member_import, _Refused([RowError(0, "", f"{message} Nothing was imported.")]), actor, now)
    member_import.refresh_from_db()
    return member_import


def _mark_failed(member_import: MemberImport, refused: _Refused, actor: Any, now: dt.datetime) -> None:
    fields: dict[str, Any] = dict(refused.counts)
    fields.update(
        status=MemberImport.Status.FAILED,
        errors=[e.as_dict() for e in refused.errors[:ERRORS_KEPT]],
        error_count=len(refused.errors),
        applied_by=actor,
        applied_at=now,
    )
    if refused.warnings:
        fields["warnings"] = refused.warnings
    MemberImport.objects.filter(pk=member_import.pk, status=MemberImport.Status.DRY_RUN).update(**fields)


def _read_kept(member_import: MemberImport) -> bytes:
    try:
        with member_import.file.open("rb") as handle:
            data = handle.read()
    except (OSError, ValueError) as exc:
        raise _Refused([RowError(0, "", "The uploaded file is no longer in storage; upload it again.")]) from exc
    if _checksum(data) != member_import.checksum:
        raise _Refused([RowError(0, "", "The stored file differs from the one checked in the dry run.")])
    return data


# --------------------------------------------------------------------------------------------
# The set-based writes (inside the apply transaction)


def _defaults(model: Any, given: Iterable[str]) -> dict[str, Any]:
    """Python defaults of the model's other columns: raw INSERTs keep working when a column
    with a default is added to the model later (Django creates no database defaults)."""
    given = set(given)
    out = {}
    for f in model._meta.concrete_fields:
        if f.primary_key or f.column in given:
            continue
        out[f.column] = f.get_default()
    return out


def _copy(cur: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with cur.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def referral_codes(count: int) -> list[str]:
    """`count` random 8-letter referral codes (the alphabet of `new_referral_code`), distinct
    among themselves; the unique index decides against existing ones."""
    codes: set[str] = set()
    while len(codes) < count:
        need = count - len(codes)
        blob = secrets.token_bytes(8 * need).translate(_REFERRAL_TABLE).decode()
        codes.update(blob[i : i + 8] for i in range(0, len(blob), 8))
    return list(codes)[:count]


def _write(
    *, program: Program, plan: ImportPlan, member_import: MemberImport, actor: Any, now: dt.datetime
) -> list[int]:
    """New members, profile updates, cards, opening balances. Returns the created ids."""
    columns = plan.parsed.columns
    with connection.cursor() as cur:
        member_ids = dict(plan.existing_ids)
        created = _insert_members(cur, program, plan.new, columns, now)
        member_ids.update(created)
        if plan.updates:
            _update_members(cur, [c for c in PROFILE_COLUMNS if c in columns], plan.updates)
        event = _CardEvents(actor_id=actor.pk, at=now, import_id=member_import.pk)
        _assign_cards(cur, [(card_id, member_ids[row.external_id]) for card_id, row in plan.assign], now, event)
        _register_cards(
            cur, program, [(row.card_number, member_ids[row.external_id]) for row in plan.register], now, event
        )
        _issue_digital_cards(cur, program, [created[r.external_id] for r in plan.new if not r.card_number], now, event)
    credits = [(created[r.external_id], r.opening_balance) for r in plan.opening_rows]
    if credits:
        points_credit_bulk(
            program=program,
            credits=credits,
            reason=f"Opening balance (import #{member_import.pk})",
            actor=actor,
            now=now,
        )
    return list(created.values())


_NEW_COLUMNS = ("external_id", "email", "first_name", "last_name", "birthday", "referral_code")


def _insert_members(
    cur: Any, program: Program, rows: list[MemberRow], columns: Sequence[str], now: dt.datetime
) -> dict[str, int]:
    """Insert the new members: COPY into a temporary table, one INSERT ... SELECT. A referral
    code already taken makes its row skip (ON CONFLICT DO NOTHING); those rows draw again.
    An external id enrolled meanwhile (by the shop, outside the import lock) is a conflict."""
    if not rows:
        return {}
    fixed = {
        "program_id": program.id,
        "enrollment_channel": Member.Channel.IMPORT,
        "enrolled_at": now,
        "status": Member.Status.ACTIVE,
    }
    defaults = {**_defaults(Member, (*_NEW_COLUMNS, *fixed)), **fixed}
    cur.execute("DROP TABLE IF EXISTS cards_import_new")
    cur.execute(
        "CREATE TEMP TABLE cards_import_new (external_id text, email text, first_name text, last_name text, "
        "birthday date, referral_code text) ON COMMIT DROP"
    )
    target = ", ".join((*_NEW_COLUMNS, *defaults))
    insert = (
        f"INSERT INTO {MEMBER} ({target}) SELECT {', '.join(_NEW_COLUMNS)}, "
        f"{', '.join(['%s'] * len(defaults))} FROM cards_import_new ON CONFLICT DO NOTHING RETURNING external_id, id"
    )
    created: dict[str, int] = {}
    pending = rows
    for _attempt in range(5):
        codes = referral_codes(len(pending))
        cur.execute("TRUNCATE cards_import_new")
        _copy(
            cur,
            "cards_import_new",
            _NEW_COLUMNS,
            (
                (r.external_id, r.email, r.first_name, r.last_name, r.birthday, code)
                for r, code in zip(pending, codes, strict=True)
            ),
        )
        cur.execute(insert, list(defaults.values()))
        created.update(cur.fetchall())
        pending = [r for r in pending if r.external_id not in created]
        if not pending:
            break
        cur.execute(
            f"SELECT external_id FROM {MEMBER} WHERE program_id = %s AND external_id = ANY(%s::text[]) LIMIT 1",
            [program.id, [r.external_id for r in pending]],
        )
        taken = cur.fetchone()
        if taken is not None:
            raise loyalty_errors.Conflict(
                f"Member {taken[0]!r} was enrolled while the import ran; run the import again.",
                external_id=taken[0],
            )
    else:
        raise loyalty_errors.Conflict("Could not draw unique referral codes; run the import again.")
    cur.execute("DROP TABLE cards_import_new")
    return created


def _update_members(cur: Any, profile: list[str], updates: list[tuple[int, MemberRow]]) -> None:
    """One UPDATE ... FROM of the profile columns the file has (never balances or status)."""
    cur.execute("DROP TABLE IF EXISTS cards_import_upd")
    cur.execute(
        "CREATE TEMP TABLE cards_import_upd (member_id bigint, email text, first_name text, last_name text, "
        "birthday date) ON COMMIT DROP"
    )
    _copy(
        cur,
        "cards_import_upd",
        ("member_id", *profile),
        ((member_id, *(getattr(row, c) for c in profile)) for member_id, row in updates),
    )
    assignments = ", ".join(f"{c} = u.{c}" for c in profile)
    cur.execute(f"UPDATE {MEMBER} m SET {assignments} FROM cards_import_upd u WHERE m.id = u.member_id")
    if cur.rowcount != len(updates):
        raise loyalty_errors.Conflict("Members changed while the import ran; run the import again.")
    cur.execute("DROP TABLE cards_import_upd")


@dataclass(frozen=True, slots=True)
class _CardEvents:
    """Who and when for the `CardEvent`s of the cards the import changes."""

    actor_id: int
    at: dt.datetime
    import_id: int

    def wrap(self, sql: str, params: list[Any], kind: str, note: str) -> tuple[str, list[Any]]:
        """`sql` (a card INSERT or UPDATE returning `id, member_id`) plus one event per card it
        changed, in the same statement; the statement returns the cards' member ids."""
        wrapped = (
            f"WITH changed AS ({sql}) INSERT INTO {CARD_EVENT} (card_id, kind, member_id, actor_id, at, note) "
            "SELECT id, %s, member_id, %s, %s, %s FROM changed RETURNING member_id"
        )
        return wrapped, [*params, kind, self.actor_id, self.at, f"import #{self.import_id}{note}"]


def _assign_cards(cur: Any, pairs: list[tuple[int, int]], now: dt.datetime, events: _CardEvents) -> None:
    """Stock cards of the file become the members' active cards (event `imported`)."""
    if not pairs:
        return
    sql, params = events.wrap(
        f"UPDATE {CARD} c SET member_id = a.member_id, status = %s, assigned_at = %s "
        "FROM unnest(%s::bigint[], %s::bigint[]) AS a(card_id, member_id) "
        "WHERE c.id = a.card_id AND c.status = %s AND c.member_id IS NULL RETURNING c.id, c.member_id",
        [Card.Status.ACTIVE, now, [p[0] for p in pairs], [p[1] for p in pairs], Card.Status.UNASSIGNED],
        CardEvent.Kind.IMPORTED,
        "",
    )
    cur.execute(sql, params)
    if cur.rowcount != len(pairs):  # the cards are locked since the plan: cannot happen
        raise loyalty_errors.Conflict("Cards changed while the import ran; run the import again.")


def _card_insert_sql(program: Program, now: dt.datetime, kind: str) -> tuple[str, list[Any]]:
    fixed = {
        "program_id": program.id,
        "kind": kind,
        "status": Card.Status.ACTIVE,
        "created_at": now,
        "assigned_at": now,
    }
    defaults = {**_defaults(Card, ("number", "member_id", *fixed)), **fixed}
    sql = (
        f"INSERT INTO {CARD} (number, member_id, {', '.join(defaults)}) "
        f"SELECT n, m, {', '.join(['%s'] * len(defaults))} "
        "FROM unnest(%s::text[], %s::bigint[]) AS c(n, m) ON CONFLICT (number) DO NOTHING RETURNING id, member_id"
    )
    return sql, list(defaults.values())


def _register_cards(
    cur: Any, program: Program, pairs: list[tuple[str, int]], now: dt.datetime, events: _CardEvents
) -> None:
    """Numbers unknown to the database become physical cards of the program, active (event
    `imported`, noted as registered)."""
    if not pairs:
        return
    sql, params = _card_insert_sql(program, now, Card.Kind.PHYSICAL)
    sql, params = events.wrap(
        sql, [*params, [p[0] for p in pairs], [p[1] for p in pairs]], CardEvent.Kind.IMPORTED, ": card registered"
    )
    cur.execute(sql, params)
    if len(cur.fetchall()) != len(pairs):
        raise loyalty_errors.Conflict("A card number of the file was created while the import ran; run it again.")


def _issue_digital_cards(
    cur: Any, program: Program, member_ids: list[int], now: dt.datetime, events: _CardEvents
) -> None:
    """One digital card per member (event `issued`): random numbers, one INSERT; numbers
    taken already (the unique index says so) are drawn again for the members still without
    a card."""
    if not member_ids:
        return
    sql, params = _card_insert_sql(program, now, Card.Kind.DIGITAL)
    pending = member_ids
    for _attempt in range(10):
        drawn = numbers.random_numbers(program.card_prefix, program.card_number_length, len(pending))
        cur.execute(*events.wrap(sql, [*params, drawn, pending], CardEvent.Kind.ISSUED, ""))
        done = {r[0] for r in cur.fetchall()}
        pending = [m for m in pending if m not in done]
        if not pending:
            return
    raise loyalty_errors.Conflict("Could not draw unique digital card numbers; the number space is nearly full.")


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
