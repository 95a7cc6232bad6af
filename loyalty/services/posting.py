"""The one posting function of the ledger (rule 1, docs/ledger.md) and its building blocks.

`points_post` locks the members' rows in id order, runs a use case's work (credits and debits
through `_Posting`), applies the balance deltas in SQL and records the idempotency key, all in
one transaction; `points_posted` is sent after commit. `credits_post_bulk` is the set-based
variant for opening balances. Nothing else writes `loyalty_ledgerentry`, `loyalty_allocation`
or a member's balance columns, except the set-based jobs (loyalty.services.jobs).

Hot paths use SQL through the Django connection (no model instances per row): an earn is one
locking read and one statement that inserts the entry, updates the balances and records the
idempotency key (or, for plain credits of one member, one statement in all: the awards of
one activity are N lots inserted by one statement).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from loyalty import errors
from loyalty.lock_objects import lock_member_rows
from loyalty.models import IdempotencyRecord, LedgerEntry, Member, Program
from loyalty.signals import points_posted, points_posted_in_transaction

from . import ledger_sql as sql
from .checks import check_aware
from .idempotency import check_key, request_hash_of
from .transactions import atomic_or_join

Kind = LedgerEntry.Kind
HELD_UNTIL = dt.datetime.fromisoformat(sql.HELD_UNTIL_SQL)  # a held lot's `available_at` (docs/fraud.md)
BALANCE_FIELDS = sql.BALANCES  # the cached balance columns of a member, for `only()` / `refresh_from_db()`


@dataclass(frozen=True)
class Balance:
    available: int
    pending: int
    lifetime_earned: int
    redeemed: int
    expired: int

    @classmethod
    def of(cls, member: Member) -> Balance:
        """The cached balances of a member row as read."""
        return cls(member.available, member.pending, member.lifetime_earned, member.redeemed, member.expired)


@dataclass
class PostResult:
    """What a posting wrote (or, on an idempotent replay, what the first call wrote)."""

    member_id: int
    entries: list[LedgerEntry]
    balance: Balance
    replayed: bool = False
    other_balances: dict[int, Balance] = field(default_factory=dict)

    @property
    def points(self) -> int:
        return sum(e.points for e in self.entries if e.member_id == self.member_id)


# --------------------------------------------------------------------------------------------
# The posting: one transaction, locked member rows, deltas applied in SQL at the end.


class _Replay(Exception):
    """Raised inside the transaction when the idempotency key already exists: roll back."""


class _Posting:
    """The work of one posting, inside the transaction, with the member rows locked."""

    def __init__(self, cursor: Any, program: Program, now: dt.datetime, actor_id: int | None) -> None:
        self.cur = cursor
        self.program = program
        self.now = now
        self.actor_id = actor_id
        self.rows: dict[int, dict[str, Any]] = {}
        self.deltas: dict[int, dict[str, int]] = {}
        self.entries: list[LedgerEntry] = []
        self._deferred: LedgerEntry | None = None
        # A member's open lots as `settle` read them, for the debit right after (no write between).
        self._open_lots: dict[int, list[tuple[Any, ...]]] = {}

    # -- locking and settling ------------------------------------------------------------

    def lock(self, member_ids: Sequence[int]) -> None:
        """Lock the members' rows in id order (no deadlock between postings and jobs)."""
        ids = sorted(set(member_ids))
        rows = lock_member_rows(self.cur, ids, ("id", "program_id", "status", *sql.BALANCES))
        found = {row[0]: row for row in rows}
        for member_id in ids:
            row = found.get(member_id)
            if row is None:
                raise errors.MemberNotFound(f"No member {member_id}.", member_id=member_id)
            if row[1] != self.program.id:
                raise errors.MemberNotFound(
                    f"Member {member_id} does not belong to program {self.program.slug}.",
                    member_id=member_id,
                    program=self.program.slug,
                )
            self.rows[member_id] = dict(zip(("id", "program_id", "status", *sql.BALANCES), row, strict=True))
            self.deltas[member_id] = dict.fromkeys(sql.BALANCES, 0)

    def adopt(self, member: Member) -> None:
        """Take the row of a member the caller locked in this transaction (and read under
        that lock) instead of locking it again: same checks as `lock`, no statement."""
        if member.program_id != self.program.id:
            raise errors.MemberNotFound(
                f"Member {member.pk} does not belong to program {self.program.slug}.",
                member_id=member.pk,
                program=self.program.slug,
            )
        columns = ("id", "program_id", "status", *sql.BALANCES)
        self.rows[member.pk] = {column: getattr(member, column) for column in columns}
        self.deltas[member.pk] = dict.fromkeys(sql.BALANCES, 0)

    def require_active(self, member_id: int) -> None:
        if self.rows[member_id]["status"] == Member.Status.BLOCKED:
            raise errors.MemberBlocked(f"Member {member_id} is blocked.", member_id=member_id)

    def current(self, member_id: int, column: str) -> int:
        return self.rows[member_id][column] + self.deltas[member_id][column]

    def settle(self, member_id: int) -> None:
        """Release due pending lots and expire overdue lots of this member before a debit,
        so that a debit never spends points that are expired or not yet available.

        One statement reads the member's open lots with what is due; when nothing is (the
        common case) they are kept for the debit that follows (`debit` then reads nothing)."""
        self.cur.execute(
            f"SELECT id, remaining, released_at IS NOT NULL, expires_at, available_at, "
            "released_at IS NULL AND available_at <= %(now)s, "
            f"expires_at IS NOT NULL AND expires_at <= %(now)s FROM {sql.ENTRY} "
            "WHERE member_id = %(m)s AND remaining > 0 "
            "ORDER BY released_at IS NULL, expires_at NULLS LAST, available_at, id",
            {"m": member_id, "now": self.now},
        )
        lots = self.cur.fetchall()
        release = [r[0] for r in lots if r[5]]
        expire = [r[0] for r in lots if r[6]]
        if not release and not expire:
            self._open_lots[member_id] = [r[:5] for r in lots]
            return
        if release:
            self.cur.execute(sql.RELEASE_LOTS, {"ids": release, "now": self.now})
        if expire:
            self.cur.execute(sql.EXPIRE_LOTS, {"ids": expire, "now": self.now})
        # The set-based SQL changed the row; read it back (still under our lock).
        self.cur.execute(f"SELECT {', '.join(sql.BALANCES)} FROM {sql.MEMBER} WHERE id = %s", [member_id])
        self.rows[member_id].update(zip(sql.BALANCES, self.cur.fetchone(), strict=True))

    # -- reads the use cases need under the lock --------------------------------------------

    def was_given_back(self, redemption_id: int) -> bool:
        """Whether a redemption's points were given back already (an entry names it as source)."""
        self.cur.execute(f"SELECT 1 FROM {sql.ENTRY} WHERE source_entry_id = %s LIMIT 1", [redemption_id])
        return self.cur.fetchone() is not None

    def consumed_by_expiry(self, debit_id: int) -> list[tuple[dt.datetime | None, int]]:
        """(expiry date, points) of the lots a debit consumed, latest expiry last."""
        self.cur.execute(
            f"SELECT l.expires_at, sum(a.points) FROM {sql.ALLOC} a JOIN {sql.ENTRY} l ON l.id = a.lot_id "
            "WHERE a.debit_id = %s GROUP BY l.expires_at ORDER BY l.expires_at NULLS LAST",
            [debit_id],
        )
        return [(expires_at, int(pts)) for expires_at, pts in self.cur.fetchall()]

    def order_refund_state(self, *, order_id: str, purchase_id: int) -> tuple[Any, int, int]:
        """(amount refunded before, points the purchase earned, points its refunds took back)."""
        self.cur.execute(
            "SELECT coalesce(sum(amount), 0) FROM loyalty_activity "
            "WHERE program_id = %s AND order_id = %s AND type = 'refund'",
            [self.program.id, order_id],
        )
        refunded_before = self.cur.fetchone()[0]
        self.cur.execute(
            f"SELECT coalesce(sum(points), 0) FROM {sql.ENTRY} WHERE activity_id = %s AND kind = 'earn'",
            [purchase_id],
        )
        earned = int(self.cur.fetchone()[0])
        # The reversals of its refunds, and of a rejected review hold (on the purchase itself).
        self.cur.execute(
            f"SELECT coalesce(-sum(e.points), 0) FROM {sql.ENTRY} e JOIN loyalty_activity a ON a.id = e.activity_id "
            "WHERE a.program_id = %s AND a.order_id = %s AND e.kind = 'reversal' AND (a.type = 'refund' OR a.id = %s)",
            [self.program.id, order_id, purchase_id],
        )
        return refunded_before, earned, int(self.cur.fetchone()[0])

    # -- lots held for review (docs/fraud.md) ---------------------------------------------------

    def release_held(self, member_id: int, activity_id: int) -> int:
        """Make the still-held lots of an activity available now; the points moved."""
        self.cur.execute(
            sql.RELEASE_HELD, {"activity": activity_id, "m": member_id, "held": HELD_UNTIL, "now": self.now}
        )
        points = int(self.cur.fetchone()[0])
        self._open_lots.pop(member_id, None)
        self.deltas[member_id]["pending"] -= points
        self.deltas[member_id]["available"] += points
        return points

    def held_remaining(self, member_id: int, activity_id: int) -> int:
        """The points of an activity's lots that are still held."""
        self.cur.execute(sql.HELD_REMAINING, {"activity": activity_id, "m": member_id, "held": HELD_UNTIL})
        return int(self.cur.fetchone()[0])

    # -- writing -----------------------------------------------------------------------------

    def _row(self, values: dict[str, Any]) -> dict[str, Any]:
        row = {c: values.get(c) for c in sql.ENTRY_COLUMNS}
        row["program_id"] = self.program.id
        row["created_at"] = self.now
        row["reason"] = row["reason"] or ""
        row["reference"] = row["reference"] or ""
        return row

    def _insert(
        self, values: dict[str, Any], *, defer: bool = False, allocations: list[tuple[int, int]] | None = None
    ) -> LedgerEntry:
        """Insert an entry now, or (`defer`) keep it for `flush`, which writes it in the same
        statement as the balances: the common earn then costs one statement after the lock.
        Only an entry nobody needs the id of yet may be deferred. `allocations` (a debit's
        (lot id, points)) are written by the same statement as the entry."""
        self._write_deferred()
        self._open_lots.pop(values["member_id"], None)
        row = self._row(values)
        entry = LedgerEntry(**row)
        self.entries.append(entry)
        if defer:
            self._deferred = entry
            return entry
        if allocations:
            self.cur.execute(
                f"WITH e AS ({sql.INSERT_ENTRY_NAMED}), "
                "t AS (SELECT * FROM unnest(%(lots)s::bigint[], %(pts)s::bigint[]) AS t(lot_id, points)), "
                f"a AS (INSERT INTO {sql.ALLOC} (debit_id, lot_id, points, created_at) "
                "SELECT e.id, t.lot_id, t.points, %(e_created_at)s FROM e, t), "
                f"u AS (UPDATE {sql.ENTRY} l SET remaining = l.remaining - t.points FROM t WHERE l.id = t.lot_id) "
                "SELECT id FROM e",
                {
                    **{f"e_{c}": row[c] for c in sql.ENTRY_COLUMNS},
                    "lots": [a[0] for a in allocations],
                    "pts": [a[1] for a in allocations],
                },
            )
        else:
            self.cur.execute(sql.INSERT_ENTRY, [row[c] for c in sql.ENTRY_COLUMNS])
        entry.id = self.cur.fetchone()[0]
        return entry

    def _write_deferred(self) -> None:
        entry, self._deferred = self._deferred, None
        if entry is not None:
            self.cur.execute(sql.INSERT_ENTRY, [getattr(entry, c) for c in sql.ENTRY_COLUMNS])
            entry.id = self.cur.fetchone()[0]

    def credit(
        self,
        member_id: int,
        *,
        kind: str,
        points: int,
        occurred_at: dt.datetime,
        available_at: dt.datetime | None = None,
        expires_at: dt.datetime | None = None,
        reason: str = "",
        reference: str = "",
        activity_id: int | None = None,
        source_entry_id: int | None = None,
    ) -> LedgerEntry:
        """Add a lot. It pays the member's debt first (oldest debt first); the rest stays
        pending until `available_at` or is available at once."""
        available_at = available_at or self.now
        released = available_at <= self.now
        debts: list[tuple[int, int]] = []
        paid = 0
        # A lot that is already expired (a late-reported activity, a redemption given back after
        # its dates) pays no debt: it only waits for the expiry to take it.
        if self.current(member_id, "available") < 0 and (expires_at is None or expires_at > self.now):
            self.cur.execute(
                f"SELECT id, -remaining FROM {sql.ENTRY} WHERE member_id = %s AND remaining < 0 ORDER BY id",
                [member_id],
            )
            for debit_id, unpaid in self.cur.fetchall():
                take = min(unpaid, points - paid)
                if take <= 0:
                    break
                debts.append((debit_id, take))
                paid += take
        entry = self._insert(
            {
                "member_id": member_id,
                "kind": kind,
                "points": points,
                "remaining": points - paid,
                "occurred_at": occurred_at,
                "available_at": available_at,
                "released_at": self.now if released else None,
                "expires_at": expires_at,
                "reason": reason,
                "reference": reference,
                "activity_id": activity_id,
                "source_entry_id": source_entry_id,
                "created_by_id": self.actor_id,
            },
            defer=not debts,
        )
        if debts:
            # Each debt payment is an allocation of the new lot to the old debit.
            self.cur.execute(
                f"WITH t AS (SELECT * FROM unnest(%(debits)s::bigint[], %(pts)s::bigint[]) AS t(debit_id, points)), "
                f"a AS (INSERT INTO {sql.ALLOC} (debit_id, lot_id, points, created_at) "
                "SELECT debit_id, %(lot)s, points, %(now)s FROM t) "
                f"UPDATE {sql.ENTRY} e SET remaining = e.remaining + t.points FROM t WHERE e.id = t.debit_id",
                {"debits": [d[0] for d in debts], "pts": [d[1] for d in debts], "lot": entry.id, "now": self.now},
            )
        d = self.deltas[member_id]
        d["available"] += paid
        d["available" if released else "pending"] += points - paid
        if kind == Kind.EARN:
            d["lifetime_earned"] += points
        elif kind == Kind.REVERSAL:  # a cancelled redemption gives its points back
            d["redeemed"] -= points
        return entry

    def debit(
        self,
        member_id: int,
        *,
        kind: str,
        points: int,
        allow_debt: bool,
        include_pending: bool,
        first_lots_of_activity: int | None = None,
        reason: str = "",
        reference: str = "",
        activity_id: int | None = None,
    ) -> tuple[LedgerEntry, list[tuple[int, int, dt.datetime | None, dt.datetime | None]]]:
        """Consume `points` from the member's lots, first-expiring first.

        Order: the lots of `first_lots_of_activity` (a refunded order's own points), then
        available lots by expiry date, then (when `include_pending`) pending lots. What is
        left becomes a debt when `allow_debt`, else `InsufficientPoints`. Returns the entry
        and what it consumed: (lot id, points, expires_at, available_at if still pending).
        """
        cached = self._open_lots.pop(member_id, None)
        if cached is not None and first_lots_of_activity is None:
            lots = [lot for lot in cached if include_pending or lot[2]]
        else:
            pending_clause = "" if include_pending else "AND released_at IS NOT NULL"
            self.cur.execute(
                f"SELECT id, remaining, released_at IS NOT NULL, expires_at, available_at FROM {sql.ENTRY} "
                f"WHERE member_id = %(m)s AND remaining > 0 {pending_clause} "
                "ORDER BY (activity_id = %(act)s) IS TRUE DESC, released_at IS NULL, "
                "expires_at NULLS LAST, available_at, id",
                {"m": member_id, "act": first_lots_of_activity},
            )
            lots = self.cur.fetchall()
        takes: list[tuple[int, int, dt.datetime | None, dt.datetime | None]] = []
        from_available = from_pending = 0
        for lot_id, remaining, released, expires_at, available_at in lots:
            need = points - from_available - from_pending
            if need <= 0:
                break
            take = min(need, remaining)
            takes.append((lot_id, take, expires_at, None if released else available_at))
            if released:
                from_available += take
            else:
                from_pending += take
        shortfall = points - from_available - from_pending
        if shortfall and not allow_debt:
            raise errors.InsufficientPoints(
                f"Member {member_id} has {from_available + from_pending} points available, {points} needed.",
                member_id=member_id,
                available=from_available + from_pending,
                requested=points,
            )
        entry = self._insert(
            {
                "member_id": member_id,
                "kind": kind,
                "points": -points,
                "remaining": -shortfall,
                "occurred_at": self.now,
                "reason": reason,
                "reference": reference,
                "activity_id": activity_id,
                "created_by_id": self.actor_id,
            },
            allocations=[(t[0], t[1]) for t in takes],
        )
        d = self.deltas[member_id]
        d["available"] -= from_available + shortfall
        d["pending"] -= from_pending
        if kind == Kind.REDEEM:
            d["redeemed"] += points
        elif kind == Kind.REVERSAL:  # a refund takes back what the order earned
            d["lifetime_earned"] -= points
        return entry, takes

    def flush(
        self,
        *,
        key: str | None,
        operation: str,
        request_hash: str,
        primary_member_id: int,
        result: dict[str, Any] | None = None,
    ) -> dict[int, Balance]:
        """Write the deferred entry, apply the balance deltas in SQL and record the idempotency
        key, in one statement. The key goes last, so a duplicate key (ON CONFLICT: nothing
        inserted) rolls the whole posting back and the first result is replayed."""
        deferred, self._deferred = self._deferred, None
        params: dict[str, Any] = {
            "ids": list(self.deltas),
            **{f"d_{c}": [self.deltas[m][c] for m in self.deltas] for c in sql.BALANCES},
        }
        ctes = []
        if deferred is not None:
            ctes.append(f"e AS ({sql.INSERT_ENTRY_NAMED})")
            params.update({f"e_{c}": getattr(deferred, c) for c in sql.ENTRY_COLUMNS})
        ctes.append(
            f"m AS (UPDATE {sql.MEMBER} m SET "
            + ", ".join(f"{c} = m.{c} + d.{c}" for c in sql.BALANCES)
            + " FROM unnest(%(ids)s::bigint[], "
            + ", ".join(f"%(d_{c})s::bigint[]" for c in sql.BALANCES)
            + f") AS d(id, {', '.join(sql.BALANCES)}) WHERE m.id = d.id RETURNING m.id, "
            + ", ".join(f"m.{c}" for c in sql.BALANCES)
            + ")"
        )
        if key is not None:
            new_id = "(SELECT id FROM e)" if deferred is not None else "NULL"
            ctes.append(
                f"k AS (INSERT INTO {sql.IDEM} (program_id, key, operation, request_hash, member_id, entry_ids, "
                "result, created_at) SELECT %(program)s, %(key)s, %(op)s, %(hash)s, %(member)s, "
                f"to_jsonb(array_remove(%(prior)s::bigint[] || {new_id}::bigint, NULL)), %(result)s::jsonb, %(now)s "
                "ON CONFLICT (program_id, key) DO NOTHING RETURNING id)"
            )
            params.update(
                {
                    "program": self.program.id,
                    "key": key,
                    "op": operation,
                    "hash": request_hash,
                    "member": primary_member_id,
                    "prior": [e.id for e in self.entries if e.id is not None],
                    "result": json.dumps(result or {}, cls=DjangoJSONEncoder),
                    "now": self.now,
                }
            )
        self.cur.execute(
            "WITH "
            + ", ".join(ctes)
            + " SELECT m.*, "
            + ("(SELECT id FROM e)" if deferred is not None else "NULL")
            + ", "
            + ("(SELECT count(*) FROM k)" if key is not None else "1")
            + " FROM m",
            params,
        )
        balances: dict[int, Balance] = {}
        for row in self.cur.fetchall():
            balances[row[0]] = Balance(*row[1:6])
            if deferred is not None:
                deferred.id = row[6]
            if row[7] == 0:
                raise _Replay
        return balances


def _replay(*, program: Program, key: str, request_hash: str) -> PostResult:
    record = IdempotencyRecord.objects.get(program=program, key=key)
    if record.request_hash != request_hash:
        raise errors.IdempotencyConflict(
            "This idempotency key was used with a different request.",
            idempotency_key=key,
            operation=record.operation,
        )
    entries = list(LedgerEntry.objects.filter(id__in=record.entry_ids).order_by("id"))
    member_ids = {e.member_id for e in entries} | ({record.member_id} if record.member_id else set())
    balances = {m.id: Balance.of(m) for m in Member.objects.filter(id__in=member_ids)}
    primary = record.member_id or (entries[0].member_id if entries else 0)
    return PostResult(
        member_id=primary,
        entries=entries,
        balance=balances.get(primary, Balance(0, 0, 0, 0, 0)),
        replayed=True,
        other_balances={k: v for k, v in balances.items() if k != primary},
    )


def _try_fast_credit(
    *,
    program: Program,
    credits: Sequence[dict[str, Any]],
    key: str | None,
    operation: str,
    request_hash: str,
    result: dict[str, Any],
    now: dt.datetime,
    context: dict[str, Any] | None = None,
) -> PostResult | type[_Replay] | None:
    """The single-statement credit of one member: one lot per element of `credits` (all for
    the same member). None: not applicable (unknown or blocked member, debt)."""
    member_id = credits[0]["member_id"]
    rows = []
    for credit in credits:
        assert credit["member_id"] == member_id
        row = {c: credit.get(c) for c in sql.ENTRY_COLUMNS}
        row.update(
            program_id=program.id,
            created_at=now,
            remaining=credit["points"],
            released_at=now if credit["available_at"] <= now else None,
            reason=credit.get("reason") or "",
            reference=credit.get("reference") or "",
        )
        rows.append(row)
    released = sum(r["points"] for r in rows if r["released_at"] is not None)
    params = {
        "program_id": program.id,
        "member_id": member_id,
        "created_at": now,
        "created_by_id": None,
        **{f"l_{c}": [r[c] for r in rows] for c, _type in sql.LOT_COLUMNS},
        "key": key,
        "op": operation,
        "hash": request_hash,
        "result": json.dumps(result, cls=DjangoJSONEncoder),
        "d_available": released,
        "d_pending": sum(r["points"] for r in rows) - released,
        "d_lifetime_earned": sum(r["points"] for r in rows if r["kind"] == Kind.EARN),
    }
    listening = points_posted_in_transaction.has_listeners(LedgerEntry)
    # Outside a transaction the statement would commit alone: the in-transaction receivers'
    # rows must commit with it.
    with transaction.atomic() if listening and not connection.in_atomic_block else nullcontext():
        with connection.cursor() as cursor:
            cursor.execute(sql.FAST_CREDIT[key is not None], params)
            status, available, entry_ids, *balance = cursor.fetchone()
        if status != Member.Status.ACTIVE or available is None or available < 0:
            return None
        if entry_ids is None:
            return _Replay
        entries = [LedgerEntry(id=entry_id, **row) for entry_id, row in zip(entry_ids, rows, strict=True)]
        posted = PostResult(member_id=member_id, entries=entries, balance=Balance(*balance))
        if listening:
            _send_posted_in_transaction(program, {member_id: posted.balance}, entries, context)
    transaction.on_commit(lambda: _send_posted(program, {member_id: posted.balance}, entries))
    return posted


def points_post(
    *,
    program: Program,
    member_ids: Sequence[int],
    operation: str,
    payload: dict[str, Any],
    work: Callable[[_Posting], None],
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
    actor_id: int | None = None,
    simple_credits: Sequence[dict[str, Any]] = (),
    result: dict[str, Any] | None = None,
    request_hash: str | None = None,
    join_caller: bool = False,
    context: dict[str, Any] | None = None,
    locked_member: Member | None = None,
) -> PostResult:
    """Post entries for one member (or two, for a transfer): the single writer of the ledger.

    Locks the members' rows in id order, runs `work` (which adds credits and debits through
    the `_Posting`), applies the balance deltas in SQL and records the idempotency key, all in
    one transaction (the caller's, if it has one open). With a key seen before: the same
    request returns the first result and writes nothing; a different request raises
    `IdempotencyConflict`. `points_posted_in_transaction` is sent after the writes, before
    commit, with `context` (what the use case tells receivers, e.g. a staff adjustment's "tell
    the member"); `points_posted` after commit.

    `simple_credits` describes the same posting as plain lots of one member for the
    single-statement fast path (`_try_fast_credit`), tried first; `work` runs when it does not
    apply. `result` is stored on the idempotency record (what a caller needs to replay).
    `join_caller`: the caller holds the transaction open and rolls it back whole on any
    exception raised through this call, so no savepoint of its own (services/transactions.py;
    only without `idempotency_key`, whose late replay undoes the writes in a savepoint).
    `locked_member` (with `join_caller`, one member): the caller locked that member's row in
    its transaction (`SELECT ... FOR UPDATE`) and read it after the lock, so its status and
    balances are current; the posting uses them instead of locking the row again.
    Queries: fast path 1; otherwise 1 lock (none with `locked_member`) + what `work` needs + 1.
    """
    check_key(idempotency_key)
    now = now or timezone.now()
    check_aware(now, "now")
    request_hash = request_hash or request_hash_of(operation, payload)
    if simple_credits:
        fast = _try_fast_credit(
            program=program,
            credits=simple_credits,
            key=idempotency_key,
            operation=operation,
            request_hash=request_hash,
            result=result or {},
            now=now,
            context=context,
        )
        if fast is _Replay:
            assert idempotency_key is not None
            return _replay(program=program, key=idempotency_key, request_hash=request_hash)
        if isinstance(fast, PostResult):
            return fast
    try:
        # Joined only without a key: a key recorded meanwhile is found after the writes (flush),
        # and its replay must undo them.
        with atomic_or_join(join=join_caller and idempotency_key is None), connection.cursor() as cursor:
            posting = _Posting(cursor, program, now, actor_id)
            if locked_member is not None:
                if not join_caller or list(member_ids) != [locked_member.pk]:
                    raise ValueError("locked_member: the caller's one locked member, with join_caller")
                posting.adopt(locked_member)
            else:
                posting.lock(member_ids)
            if idempotency_key is not None:
                # A retry is answered before the use case runs its checks again: it must get
                # the first result even if the same request would be refused now. Under the
                # member lock, so a concurrent first attempt has committed or rolled back.
                cursor.execute(
                    f"SELECT 1 FROM {sql.IDEM} WHERE program_id = %s AND key = %s", [program.id, idempotency_key]
                )
                if cursor.fetchone():
                    raise _Replay
            work(posting)
            balances = posting.flush(
                key=idempotency_key,
                operation=operation,
                request_hash=request_hash,
                primary_member_id=member_ids[0],
                result=result or {},
            )
            entries = posting.entries
            if points_posted_in_transaction.has_listeners(LedgerEntry):
                _send_posted_in_transaction(program, balances, entries, context)
            transaction.on_commit(lambda: _send_posted(program, balances, entries))
    except _Replay:
        assert idempotency_key is not None
        return _replay(program=program, key=idempotency_key, request_hash=request_hash)
    primary = member_ids[0]
    return PostResult(
        member_id=primary,
        entries=entries,
        balance=balances[primary],
        other_balances={k: v for k, v in balances.items() if k != primary},
    )


def _send_posted_in_transaction(
    program: Program, balances: dict[int, Balance], entries: list[LedgerEntry], context: dict[str, Any] | None
) -> None:
    for member_id, balance in balances.items():
        mine = [e for e in entries if e.member_id == member_id]
        if mine:
            points_posted_in_transaction.send(
                sender=LedgerEntry,
                program=program,
                member_id=member_id,
                balance=balance,
                entries=mine,
                context=context or {},
            )


def _send_posted(program: Program, balances: dict[int, Balance], entries: list[LedgerEntry]) -> None:
    for member_id, balance in balances.items():
        mine = [e for e in entries if e.member_id == member_id]
        if mine:
            points_posted.send(sender=LedgerEntry, program=program, member_id=member_id, balance=balance, entries=mine)


def credits_post_bulk(
    *,
    program: Program,
    credits: Sequence[tuple[int, int]],
    reason: str,
    actor_id: int,
    now: dt.datetime,
    kind: str = Kind.ADJUST,
) -> tuple[list[tuple[int, int, int]], set[int]]:
    """Credit many members at once, one lot each of `kind` (`adjust`, or `earn`, which also
    raises `lifetime_earned` in the same statement), set-based: members locked in
    id order, lots inserted and balances raised in one statement. Members who owe points are
    left out and returned (their credit must pay the debt first: a normal posting). Joins the
    caller's transaction. Returns ((entry id, member id, points) written, indebted member ids)
    and announces the entries after commit. Queries: 2."""
    member_ids = [c[0] for c in credits]
    expires_at = program.expiry_for(now)
    with transaction.atomic(), connection.cursor() as cur:
        rows = {r[0]: r for r in lock_member_rows(cur, member_ids, ("id", "program_id", "available"))}
        for member_id in member_ids:
            if member_id not in rows or rows[member_id][1] != program.id:
                raise errors.MemberNotFound(f"No member {member_id} in this program.", member_id=member_id)
        indebted = {m for m in member_ids if rows[m][2] < 0}
        if indebted and kind == Kind.EARN:
            raise errors.InvalidInput("Members who owe points cannot get an earn-kind bulk credit.", field="credits")
        plain = [(m, p) for m, p in credits if m not in indebted]
        cur.execute(
            sql.BULK_CREDIT,
            {
                "ids": [c[0] for c in plain],
                "pts": [c[1] for c in plain],
                "program": program.id,
                "now": now,
                "expires": expires_at,
                "reason": reason,
                "actor": actor_id,
                "kind": str(kind),
            },
        )
        written = cur.fetchall()

    def announce() -> None:
        if not points_posted.has_listeners(LedgerEntry):
            return  # nothing to build 10^5 entries for
        for entry_id, member_id, points in written:
            entry = LedgerEntry(
                id=entry_id,
                program_id=program.id,
                member_id=member_id,
                kind=kind,
                points=points,
                remaining=points,
                created_at=now,
                occurred_at=now,
                available_at=now,
                released_at=now,
                expires_at=expires_at,
                reason=reason,
                created_by_id=actor_id,
            )
            points_posted.send(sender=LedgerEntry, program=program, member_id=member_id, balance=None, entries=[entry])

    transaction.on_commit(announce)
    return written, indebted
