"""The set-based writes of an import, inside the apply transaction: new members (COPY + one
INSERT), profile updates, cards assigned / registered / issued with their events, opening
balances.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection

from loyalty import errors as loyalty_errors
from loyalty.models import Member, Program
from loyalty.services import points_credit_bulk

from .. import numbers
from ..models import Card, CardEvent, MemberImport
from ..signals import import_tiers_assign
from .parsing import (
    _REFERRAL_TABLE,
    CARD,
    CARD_EVENT,
    MEMBER,
    PROFILE_COLUMNS,
    MemberRow,
)
from .planning import (
    ImportPlan,
)

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
    """New members, profile updates, cards, opening balances, then the tiers the file names
    (`import_tiers_assign`, handled by a higher app in this transaction). Returns the created
    ids."""
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
            kind="earn" if member_import.opening_balance_counts_for_tier else "adjust",
        )
    if plan.tiered:
        import_tiers_assign.send(
            sender=MemberImport,
            program=program,
            member_import=member_import,
            assignments=[(member_ids[r.external_id], r.tier) for r in plan.tiered],
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
