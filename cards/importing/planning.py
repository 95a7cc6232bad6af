"""The plan of an import: the parsed rows matched to the program's members, emails and cards
(new / updated / unchanged, card actions) and the errors only the database can tell. Reads only
(locks the file's cards on apply).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from loyalty.models import Program

from ..models import Card
from ..signals import import_tier_names_check
from .parsing import (
    CARD,
    CHANGES_KEPT,
    COLUMNS,
    MEMBER,
    PROFILE_COLUMNS,
    MemberRow,
    ParsedFile,
    RowError,
)

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
    tiered: list[MemberRow]  # rows that passed every check and name a tier

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
    unknown_tiers = _unknown_tiers(program, parsed)
    tiered: list[MemberRow] = []
    for row in rows:
        current = existing.get(row.external_id)
        if row.tier and row.tier.casefold() in unknown_tiers:
            errors.append(RowError(row.line, "tier", "No tier of this program has this name.", row.tier))
            continue
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
        if row.tier:
            tiered.append(row)
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
        tiered=tiered,
    )


def _unknown_tiers(program: Program, parsed: ParsedFile) -> set[str]:
    """The file's tier names (casefolded) that name no tier of the program, as the receivers
    of `import_tier_names_check` tell (the tiers live in a sibling app cards may not import).
    No receiver: every name is unknown."""
    names = sorted(parsed.tiers)
    if not names:
        return set()
    responses = import_tier_names_check.send(sender=ImportPlan, program=program, names=names)
    if not responses:
        return {n.casefold() for n in names}
    return {n.casefold() for _receiver, unknown in responses for n in (unknown or ())}


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
