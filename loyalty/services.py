"""Every write of the loyalty core. The only code that writes ledger entries and balances.

Rule 1 of DESIGN.md: member postings all run through `points_post` (one member's or, for a
transfer, two members' rows locked in id order; idempotency; entries; allocations; balances;
the `points_posted` signal after commit). The set-based jobs `points_expire` and
`points_release` write through the same SQL primitives (`_expire_lots_sql`,
`_release_lots_sql`), one transaction per chunk. Nothing outside this module writes the
tables `loyalty_ledgerentry`, `loyalty_allocation` or a member's balance columns; a database
trigger refuses updates of entries other than `remaining`/`released_at` and every delete.

Hot paths use SQL through the Django connection (no model instances per row): an earn is
one locking read and one statement that inserts the entry, updates the balances and records
the idempotency key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from . import errors
from .models import Activity, IdempotencyRecord, LedgerEntry, LedgerJobRun, Member, Program, new_referral_code
from .signals import ledger_job_finished, member_enrolled, member_status_changed, points_posted

Kind = LedgerEntry.Kind
ENTRY = LedgerEntry._meta.db_table
ALLOC = "loyalty_allocation"
MEMBER = Member._meta.db_table
IDEM = IdempotencyRecord._meta.db_table

_ENTRY_COLUMNS = (
    "program_id",
    "member_id",
    "kind",
    "points",
    "remaining",
    "created_at",
    "occurred_at",
    "available_at",
    "released_at",
    "expires_at",
    "reason",
    "reference",
    "activity_id",
    "source_entry_id",
    "created_by_id",
)
_BALANCES = ("available", "pending", "lifetime_earned", "redeemed", "expired")
BALANCE_FIELDS = _BALANCES  # the cached balance columns of a member, for `only()` / `refresh_from_db()`
_INSERT_ENTRY = (
    f"INSERT INTO {ENTRY} ({', '.join(_ENTRY_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_ENTRY_COLUMNS))}) RETURNING id"
)
_INSERT_ENTRY_NAMED = (
    f"INSERT INTO {ENTRY} ({', '.join(_ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join(f'%(e_{c})s' for c in _ENTRY_COLUMNS)}) RETURNING id"
)


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


@dataclass(frozen=True)
class JobResult:
    lots: int
    points: int
    members: int
    chunks: int


# --------------------------------------------------------------------------------------------
# Input checks (raise before anything is written)


def _check_points(points: Any, *, allow_negative: bool = False) -> int:
    if isinstance(points, bool) or not isinstance(points, int):
        raise errors.InvalidPoints("Points must be a whole number.", points=points)
    if points == 0:
        raise errors.InvalidPoints("Points must not be zero.", points=points)
    if points < 0 and not allow_negative:
        raise errors.InvalidPoints("Points must be positive.", points=points)
    limit = settings.LOYALTY_MAX_POINTS_PER_POST
    if abs(points) > limit:
        raise errors.InvalidPoints(f"At most {limit} points can be posted at once.", points=points, limit=limit)
    return points


def _check_aware(moment: dt.datetime | None, name: str) -> None:
    if moment is not None and timezone.is_naive(moment):
        raise errors.InvalidInput(f"{name} must carry a time zone.", field=name)


def _full_clean(obj: Any, **kwargs: Any) -> None:
    """Model validation as a domain error naming the fields (the API's 400 `details`)."""
    try:
        obj.full_clean(**kwargs)
    except ValidationError as exc:
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        raise errors.InvalidInput("Invalid input.", fields=fields) from exc


def _canonical(value: Any) -> str:
    """One spelling per value, so that equal requests hash alike: 100 == 100.00, and a moment
    is the same whatever offset it was written with."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return str(value)


def _request_hash(operation: str, payload: dict[str, Any]) -> str:
    body = json.dumps({"op": operation, **payload}, sort_keys=True, default=_canonical, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _check_key(key: str | None) -> None:
    if key is None:
        return
    if not isinstance(key, str) or not 1 <= len(key) <= 255 or not key.isprintable():
        raise errors.InvalidInput("An idempotency key is 1 to 255 printable characters.", field="idempotency_key")


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

    # -- locking and settling ------------------------------------------------------------

    def lock(self, member_ids: Sequence[int]) -> None:
        """Lock the members' rows in id order (no deadlock between postings and jobs)."""
        ids = sorted(set(member_ids))
        self.cur.execute(
            f"SELECT id, program_id, status, {', '.join(_BALANCES)} FROM {MEMBER} "
            "WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            [ids],
        )
        found = {row[0]: row for row in self.cur.fetchall()}
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
            self.rows[member_id] = dict(zip(("id", "program_id", "status", *_BALANCES), row, strict=True))
            self.deltas[member_id] = dict.fromkeys(_BALANCES, 0)

    def require_active(self, member_id: int) -> None:
        if self.rows[member_id]["status"] == Member.Status.BLOCKED:
            raise errors.MemberBlocked(f"Member {member_id} is blocked.", member_id=member_id)

    def current(self, member_id: int, column: str) -> int:
        return self.rows[member_id][column] + self.deltas[member_id][column]

    def settle(self, member_id: int) -> None:
        """Release due pending lots and expire overdue lots of this member before a debit,
        so that a debit never spends points that are expired or not yet available."""
        self.cur.execute(
            f"SELECT id, released_at IS NULL AND available_at <= %(now)s, "
            f"expires_at IS NOT NULL AND expires_at <= %(now)s FROM {ENTRY} "
            "WHERE member_id = %(m)s AND remaining > 0 "
            "AND ((released_at IS NULL AND available_at <= %(now)s) OR expires_at <= %(now)s)",
            {"m": member_id, "now": self.now},
        )
        due = self.cur.fetchall()
        if not due:
            return
        release = [r[0] for r in due if r[1]]
        expire = [r[0] for r in due if r[2]]
        if release:
            self.cur.execute(_release_lots_sql(), {"ids": release, "now": self.now})
        if expire:
            self.cur.execute(_expire_lots_sql(), {"ids": expire, "now": self.now})
        # The set-based SQL changed the row; read it back (still under our lock).
        self.cur.execute(f"SELECT {', '.join(_BALANCES)} FROM {MEMBER} WHERE id = %s", [member_id])
        self.rows[member_id].update(zip(_BALANCES, self.cur.fetchone(), strict=True))

    # -- writing -----------------------------------------------------------------------------

    def _row(self, values: dict[str, Any]) -> dict[str, Any]:
        row = {c: values.get(c) for c in _ENTRY_COLUMNS}
        row["program_id"] = self.program.id
        row["created_at"] = self.now
        row["reason"] = row["reason"] or ""
        row["reference"] = row["reference"] or ""
        return row

    def _insert(self, values: dict[str, Any], *, defer: bool = False) -> LedgerEntry:
        """Insert an entry now, or (`defer`) keep it for `flush`, which writes it in the same
        statement as the balances: the common earn then costs one statement after the lock.
        Only an entry nobody needs the id of yet may be deferred."""
        self._write_deferred()
        row = self._row(values)
        entry = LedgerEntry(**row)
        self.entries.append(entry)
        if defer:
            self._deferred = entry
            return entry
        self.cur.execute(_INSERT_ENTRY, [row[c] for c in _ENTRY_COLUMNS])
        entry.id = self.cur.fetchone()[0]
        return entry

    def _write_deferred(self) -> None:
        entry, self._deferred = self._deferred, None
        if entry is not None:
            self.cur.execute(_INSERT_ENTRY, [getattr(entry, c) for c in _ENTRY_COLUMNS])
            entry.id = self.cur.fetchone()[0]

    def _allocate(self, debit_id: int, takes: list[tuple[int, int]]) -> None:
        """Record that `debit_id` consumed (lot id, points) and lower the lots' remainders."""
        if not takes:
            return
        lot_ids = [t[0] for t in takes]
        amounts = [t[1] for t in takes]
        self.cur.execute(
            f"WITH t AS (SELECT * FROM unnest(%(lots)s::bigint[], %(pts)s::bigint[]) AS t(lot_id, points)), "
            f"a AS (INSERT INTO {ALLOC} (debit_id, lot_id, points, created_at) "
            "SELECT %(debit)s, lot_id, points, %(now)s FROM t) "
            f"UPDATE {ENTRY} e SET remaining = e.remaining - t.points FROM t WHERE e.id = t.lot_id",
            {"lots": lot_ids, "pts": amounts, "debit": debit_id, "now": self.now},
        )

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
                f"SELECT id, -remaining FROM {ENTRY} WHERE member_id = %s AND remaining < 0 ORDER BY id",
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
                f"a AS (INSERT INTO {ALLOC} (debit_id, lot_id, points, created_at) "
                "SELECT debit_id, %(lot)s, points, %(now)s FROM t) "
                f"UPDATE {ENTRY} e SET remaining = e.remaining + t.points FROM t WHERE e.id = t.debit_id",
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
        pending_clause = "" if include_pending else "AND released_at IS NOT NULL"
        self.cur.execute(
            f"SELECT id, remaining, released_at IS NOT NULL, expires_at, available_at FROM {ENTRY} "
            f"WHERE member_id = %(m)s AND remaining > 0 {pending_clause} "
            "ORDER BY (activity_id = %(act)s) IS TRUE DESC, released_at IS NULL, "
            "expires_at NULLS LAST, available_at, id",
            {"m": member_id, "act": first_lots_of_activity},
        )
        takes: list[tuple[int, int, dt.datetime | None, dt.datetime | None]] = []
        from_available = from_pending = 0
        for lot_id, remaining, released, expires_at, available_at in self.cur.fetchall():
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
            }
        )
        self._allocate(entry.id, [(t[0], t[1]) for t in takes])
        d = self.deltas[member_id]
        d["available"] -= from_available + shortfall
        d["pending"] -= from_pending
        if kind == Kind.REDEEM:
            d["redeemed"] += points
        elif kind == Kind.REVERSAL:  # a refund takes back what the order earned
            d["lifetime_earned"] -= points
        return entry, takes

    def flush(
        self, *, key: str | None, operation: str, request_hash: str, primary_member_id: int
    ) -> dict[int, Balance]:
        """Write the deferred entry, apply the balance deltas in SQL and record the idempotency
        key, in one statement. The key goes last, so a duplicate key (ON CONFLICT: nothing
        inserted) rolls the whole posting back and the first result is replayed."""
        deferred, self._deferred = self._deferred, None
        params: dict[str, Any] = {
            "ids": list(self.deltas),
            **{f"d_{c}": [self.deltas[m][c] for m in self.deltas] for c in _BALANCES},
        }
        ctes = []
        if deferred is not None:
            ctes.append(f"e AS ({_INSERT_ENTRY_NAMED})")
            params.update({f"e_{c}": getattr(deferred, c) for c in _ENTRY_COLUMNS})
        ctes.append(
            f"m AS (UPDATE {MEMBER} m SET "
            + ", ".join(f"{c} = m.{c} + d.{c}" for c in _BALANCES)
            + " FROM unnest(%(ids)s::bigint[], "
            + ", ".join(f"%(d_{c})s::bigint[]" for c in _BALANCES)
            + f") AS d(id, {', '.join(_BALANCES)}) WHERE m.id = d.id RETURNING m.id, "
            + ", ".join(f"m.{c}" for c in _BALANCES)
            + ")"
        )
        if key is not None:
            new_id = "(SELECT id FROM e)" if deferred is not None else "NULL"
            ctes.append(
                f"k AS (INSERT INTO {IDEM} (program_id, key, operation, request_hash, member_id, entry_ids, result, "
                "created_at) SELECT %(program)s, %(key)s, %(op)s, %(hash)s, %(member)s, "
                f"to_jsonb(array_remove(%(prior)s::bigint[] || {new_id}::bigint, NULL)), '{{}}', %(now)s "
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
    balances = {m.id: _balance_of(m) for m in Member.objects.filter(id__in=member_ids)}
    primary = record.member_id or (entries[0].member_id if entries else 0)
    return PostResult(
        member_id=primary,
        entries=entries,
        balance=balances.get(primary, Balance(0, 0, 0, 0, 0)),
        replayed=True,
        other_balances={k: v for k, v in balances.items() if k != primary},
    )


def _balance_of(member: Member) -> Balance:
    return Balance.of(member)


def _fast_credit_sql(with_key: bool) -> str:
    """One statement for the common credit: lock the member row, and only if the member is
    active and owes nothing, record the idempotency key, insert the lot and add to the
    balances. It runs as its own transaction (autocommit) or inside the caller's. When the
    conditions don't hold it writes nothing and says why (the general path takes over); when
    the key exists already it writes nothing and the first result is replayed.

    Row-lock note: `locked` takes the FOR UPDATE lock; the UPDATE of the same row then applies
    its increments to the newest committed version (READ COMMITTED re-check), like any
    `SET x = x + n`."""
    key_cte = (
        f", k AS (INSERT INTO {IDEM} (program_id, key, operation, request_hash, member_id, entry_ids, result, "
        "created_at) SELECT %(program_id)s, %(key)s, %(op)s, %(hash)s, %(member_id)s, to_jsonb(ARRAY[go.entry_id]), "
        "'{}', %(created_at)s FROM go ON CONFLICT (program_id, key) DO NOTHING RETURNING id)"
    )
    return (
        f"WITH locked AS (SELECT id, status, available FROM {MEMBER} "
        "WHERE id = %(member_id)s AND program_id = %(program_id)s FOR UPDATE), "
        f"go AS (SELECT nextval(pg_get_serial_sequence('{ENTRY}', 'id')) AS entry_id FROM locked "
        "WHERE status = 'active' AND available >= 0)"
        + (key_cte if with_key else "")
        + f", e AS (INSERT INTO {ENTRY} (id, {', '.join(_ENTRY_COLUMNS)}) "
        f"SELECT go.entry_id, {', '.join(f'%({c})s' for c in _ENTRY_COLUMNS)} FROM go"
        + (" WHERE EXISTS (SELECT 1 FROM k)" if with_key else "")
        + " RETURNING id), "
        f"m AS (UPDATE {MEMBER} m SET available = m.available + %(d_available)s, pending = m.pending + %(d_pending)s, "
        "lifetime_earned = m.lifetime_earned + %(d_lifetime_earned)s FROM e WHERE m.id = %(member_id)s "
        f"RETURNING {', '.join(f'm.{c}' for c in _BALANCES)}) "
        "SELECT (SELECT status FROM locked), (SELECT available FROM locked), (SELECT id FROM e), m.* "
        "FROM (SELECT 1) AS one LEFT JOIN m ON true"
    )


_FAST_CREDIT_SQL = {True: _fast_credit_sql(True), False: _fast_credit_sql(False)}


def _try_fast_credit(
    *, program: Program, credit: dict[str, Any], key: str | None, operation: str, request_hash: str, now: dt.datetime
) -> PostResult | type[_Replay] | None:
    """The single-statement credit. None: not applicable (unknown or blocked member, debt)."""
    released = credit["available_at"] <= now
    row = {c: credit.get(c) for c in _ENTRY_COLUMNS}
    row.update(
        program_id=program.id,
        created_at=now,
        remaining=credit["points"],
        released_at=now if released else None,
        reason=credit.get("reason") or "",
        reference=credit.get("reference") or "",
    )
    params = {
        **row,
        "key": key,
        "op": operation,
        "hash": request_hash,
        "d_available": credit["points"] if released else 0,
        "d_pending": 0 if released else credit["points"],
        "d_lifetime_earned": credit["points"] if credit["kind"] == Kind.EARN else 0,
    }
    with connection.cursor() as cursor:
        cursor.execute(_FAST_CREDIT_SQL[key is not None], params)
        status, available, entry_id, *balance = cursor.fetchone()
    if status != Member.Status.ACTIVE or available is None or available < 0:
        return None
    if entry_id is None:
        return _Replay
    entry = LedgerEntry(id=entry_id, **row)
    result = PostResult(member_id=row["member_id"], entries=[entry], balance=Balance(*balance))
    transaction.on_commit(lambda: _send_posted(program, {result.member_id: result.balance}, result.entries))
    return result


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
    simple_credit: dict[str, Any] | None = None,
) -> PostResult:
    """Post entries for one member (or two, for a transfer): the single writer of the ledger.

    Locks the members' rows in id order, runs `work` (which adds credits and debits through
    the `_Posting`), applies the balance deltas in SQL and records the idempotency key, all in
    one transaction (the caller's, if it has one open). With a key seen before: the same
    request returns the first result and writes nothing; a different request raises
    `IdempotencyConflict`. `points_posted` is sent after commit.

    `simple_credit` describes the same posting as one plain lot for the single-statement fast
    path (`_try_fast_credit`), tried first; `work` runs when it does not apply.
    Queries: fast path 1; otherwise 1 lock + what `work` needs + 1.
    """
    _check_key(idempotency_key)
    now = now or timezone.now()
    _check_aware(now, "now")
    request_hash = _request_hash(operation, payload)
    if simple_credit is not None:
        fast = _try_fast_credit(
            program=program,
            credit=simple_credit,
            key=idempotency_key,
            operation=operation,
            request_hash=request_hash,
            now=now,
        )
        if fast is _Replay:
            assert idempotency_key is not None
            return _replay(program=program, key=idempotency_key, request_hash=request_hash)
        if isinstance(fast, PostResult):
            return fast
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            posting = _Posting(cursor, program, now, actor_id)
            posting.lock(member_ids)
            if idempotency_key is not None:
                # A retry is answered before the use case runs its checks again: it must get
                # the first result even if the same request would be refused now. Under the
                # member lock, so a concurrent first attempt has committed or rolled back.
                cursor.execute(
                    f"SELECT 1 FROM {IDEM} WHERE program_id = %s AND key = %s", [program.id, idempotency_key]
                )
                if cursor.fetchone():
                    raise _Replay
            work(posting)
            balances = posting.flush(
                key=idempotency_key, operation=operation, request_hash=request_hash, primary_member_id=member_ids[0]
            )
            entries = posting.entries
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


def _send_posted(program: Program, balances: dict[int, Balance], entries: list[LedgerEntry]) -> None:
    for member_id, balance in balances.items():
        mine = [e for e in entries if e.member_id == member_id]
        if mine:
            points_posted.send(sender=LedgerEntry, program=program, member_id=member_id, balance=balance, entries=mine)


# --------------------------------------------------------------------------------------------
# Use cases. Each checks its input, then calls `points_post`.


def points_earn(
    *,
    program: Program,
    member_id: int,
    points: int,
    reason: str = "",
    reference: str = "",
    activity: Activity | None = None,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """Credit earned points as one lot dated by `occurred_at` (the activity's, if given):
    pending for the program's pending days, expiring after its expiry days. Refused for a
    blocked member."""
    _check_points(points)
    now = now or timezone.now()
    given_occurred_at = occurred_at
    occurred_at = occurred_at or (activity.occurred_at if activity else now)
    _check_aware(occurred_at, "occurred_at")
    if activity is not None and activity.member_id != member_id:
        raise errors.InvalidInput("The activity belongs to another member.", field="activity")

    lot = {
        "member_id": member_id,
        "kind": Kind.EARN,
        "points": points,
        "occurred_at": occurred_at,
        "available_at": program.availability_for(occurred_at),
        "expires_at": program.expiry_for(occurred_at),
        "reason": reason,
        "reference": reference,
        "activity_id": activity.id if activity else None,
    }

    def work(p: _Posting) -> None:
        p.require_active(member_id)
        p.credit(member_id, **{k: v for k, v in lot.items() if k != "member_id"})

    payload = {
        "member": member_id,
        "points": points,
        "reason": reason,
        "reference": reference,
        "activity": activity.id if activity else None,
        "occurred_at": given_occurred_at,
    }
    return points_post(
        program=program,
        member_ids=[member_id],
        operation="earn",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
        simple_credit=lot,
    )


def points_adjust(
    *,
    program: Program,
    member_id: int,
    points: int,
    reason: str,
    actor: Any = None,
    source: str = "",
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """A staff correction, signed. A credit is a lot (expiring as if earned now); a debit
    spends available then pending points and may leave a debt. Works on blocked members.
    Who made it: `actor` (a staff user, kept as `created_by`) or, for an integration,
    `source` (e.g. "api-key:ab12cd (POS)", kept as the entry's reference)."""
    _check_points(points, allow_negative=True)
    if not (reason or "").strip():
        raise errors.ReasonRequired("An adjustment needs a reason.", field="reason")
    has_actor = actor is not None and getattr(actor, "pk", None)
    if not has_actor and not (source or "").strip():
        raise errors.InvalidInput("An adjustment needs the acting staff user or its source.", field="actor")
    now = now or timezone.now()

    def work(p: _Posting) -> None:
        if points > 0:
            p.credit(
                member_id,
                kind=Kind.ADJUST,
                points=points,
                occurred_at=now,
                expires_at=program.expiry_for(now),
                reason=reason,
                reference=source[:255],
            )
        else:
            p.settle(member_id)
            p.debit(
                member_id,
                kind=Kind.ADJUST,
                points=-points,
                allow_debt=True,
                include_pending=True,
                reason=reason,
                reference=source[:255],
            )

    payload = {"member": member_id, "points": points, "reason": reason, "actor": actor.pk if has_actor else None}
    if source:
        payload["source"] = source
    return points_post(
        program=program,
        member_ids=[member_id],
        operation="adjust",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
        actor_id=actor.pk if has_actor else None,
    )


def points_redeem(
    *,
    program: Program,
    member_id: int,
    points: int,
    reason: str = "",
    reference: str = "",
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """Spend available points, first-expiring first. Never leaves the member below zero:
    `InsufficientPoints` when short (pending and expired points don't count);
    `BelowMinimumRedemption` under the program's minimum redemption."""
    _check_points(points)
    if points < program.min_redemption:
        raise errors.BelowMinimumRedemption(
            f"A redemption spends at least {program.min_redemption} points.",
            points=points,
            minimum=program.min_redemption,
        )

    def work(p: _Posting) -> None:
        p.require_active(member_id)
        p.settle(member_id)
        p.debit(
            member_id,
            kind=Kind.REDEEM,
            points=points,
            allow_debt=False,
            include_pending=False,
            reason=reason,
            reference=reference,
        )

    payload = {"member": member_id, "points": points, "reason": reason, "reference": reference}
    return points_post(
        program=program,
        member_ids=[member_id],
        operation="redeem",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
    )


def points_restore(
    *,
    program: Program,
    entry_id: int,
    reason: str = "",
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """Give back the points of a redemption (a cancelled coupon) as lots with the expiry
    dates of the lots it consumed. A redemption is given back once (`AlreadyReversed`)."""
    entry = LedgerEntry.objects.filter(id=entry_id, program=program, kind=Kind.REDEEM).first()
    if entry is None:
        raise errors.EntryNotFound(f"No redemption entry {entry_id} in this program.", entry_id=entry_id)

    def work(p: _Posting) -> None:
        p.cur.execute(f"SELECT 1 FROM {ENTRY} WHERE source_entry_id = %s LIMIT 1", [entry.id])
        if p.cur.fetchone():
            raise errors.AlreadyReversed(f"Redemption {entry.id} was already given back.", entry_id=entry.id)
        p.cur.execute(
            f"SELECT l.expires_at, sum(a.points) FROM {ALLOC} a JOIN {ENTRY} l ON l.id = a.lot_id "
            "WHERE a.debit_id = %s GROUP BY l.expires_at ORDER BY l.expires_at NULLS LAST",
            [entry.id],
        )
        for expires_at, pts in p.cur.fetchall():
            p.credit(
                entry.member_id,
                kind=Kind.REVERSAL,
                points=int(pts),
                occurred_at=p.now,
                expires_at=expires_at,
                reason=reason or f"Redemption {entry.id} cancelled",
                reference=entry.reference,
                source_entry_id=entry.id,
            )

    payload = {"entry": entry_id, "reason": reason}
    return points_post(
        program=program,
        member_ids=[entry.member_id],
        operation="restore",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
    )


def points_reverse_order(
    *,
    program: Program,
    order_id: str,
    amount: Decimal,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """Refund `amount` of an order: record a refund activity and take back the order's
    points in proportion (cumulative, so partial refunds add up to exactly the order's points
    at a full refund). Takes the order's own lots first, then other points; what is missing
    (the points were spent) becomes a debt. `RefundExceedsOrder` past the order's amount."""
    try:
        amount = Decimal(amount)
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise errors.InvalidInput("The refund amount must be a decimal number.", field="amount") from exc
    if not amount.is_finite() or amount <= 0:
        raise errors.InvalidInput("The refund amount must be positive.", field="amount")
    now = now or timezone.now()
    payload = {"order": order_id, "amount": amount, "occurred_at": occurred_at}
    occurred_at = occurred_at or now
    _check_aware(occurred_at, "occurred_at")
    purchase = Activity.objects.filter(program=program, type=Activity.Type.PURCHASE, order_id=order_id).first()
    if purchase is None:
        raise errors.OrderNotFound(f"No purchase with order id {order_id!r}.", order_id=order_id)
    order_amount = purchase.amount or Decimal(0)

    def work(p: _Posting) -> None:
        p.cur.execute(
            "SELECT coalesce(sum(amount), 0) FROM loyalty_activity "
            "WHERE program_id = %s AND order_id = %s AND type = 'refund'",
            [program.id, order_id],
        )
        refunded_before = p.cur.fetchone()[0]
        if refunded_before + amount > order_amount:
            raise errors.RefundExceedsOrder(
                f"Refunds of order {order_id} would total {refunded_before + amount}, more than its {order_amount}.",
                order_id=order_id,
                order_amount=str(order_amount),
                refunded=str(refunded_before),
                requested=str(amount),
            )
        p.cur.execute(
            f"SELECT coalesce(sum(points), 0) FROM {ENTRY} WHERE activity_id = %s AND kind = 'earn'", [purchase.id]
        )
        earned = int(p.cur.fetchone()[0])
        p.cur.execute(
            f"SELECT coalesce(-sum(e.points), 0) FROM {ENTRY} e JOIN loyalty_activity a ON a.id = e.activity_id "
            "WHERE a.program_id = %s AND a.order_id = %s AND a.type = 'refund' AND e.kind = 'reversal'",
            [program.id, order_id],
        )
        reversed_before = int(p.cur.fetchone()[0])
        refund = Activity.objects.create(
            program=program,
            member_id=purchase.member_id,
            type=Activity.Type.REFUND,
            occurred_at=occurred_at,
            order_id=order_id,
            amount=amount,
            currency=purchase.currency,
            channel=purchase.channel,
        )
        share = (refunded_before + amount) / order_amount if order_amount else Decimal(1)
        target = int((Decimal(earned) * share).to_integral_value(rounding=ROUND_FLOOR))
        points = min(target, earned) - reversed_before
        if points > 0:
            p.settle(purchase.member_id)
            p.debit(
                purchase.member_id,
                kind=Kind.REVERSAL,
                points=points,
                allow_debt=True,
                include_pending=True,
                first_lots_of_activity=purchase.id,
                reason=f"Refund of order {order_id}",
                reference=order_id,
                activity_id=refund.id,
            )

    return points_post(
        program=program,
        member_ids=[purchase.member_id],
        operation="reverse",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
    )


def points_transfer(
    *,
    program: Program,
    from_member_id: int,
    to_member_id: int,
    points: int,
    reason: str = "",
    actor: Any = None,
    include_pending: bool = False,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """Move available points to another member of the program. The receiver's lots keep the
    expiry dates of the sender's lots. Never takes the sender below zero.

    `include_pending` also moves points still in their return window (after the available
    ones); they stay pending on the receiver until their original date (merging an
    anonymous card member into a customer's account)."""
    _check_points(points)
    if from_member_id == to_member_id:
        raise errors.InvalidInput("A transfer needs two different members.", field="to")
    transfer_ref = f"transfer:{secrets.token_hex(8)}"

    def work(p: _Posting) -> None:
        p.require_active(from_member_id)
        p.require_active(to_member_id)
        p.settle(from_member_id)
        debit, takes = p.debit(
            from_member_id,
            kind=Kind.TRANSFER,
            points=points,
            allow_debt=False,
            include_pending=include_pending,
            reason=reason or f"Transfer to member {to_member_id}",
            reference=transfer_ref,
        )
        # One receiving lot per (expiry, pending date) of the consumed lots.
        groups: dict[tuple[dt.datetime | None, dt.datetime | None], int] = {}
        for _lot, take, expires_at, pending_until in takes:
            groups[(expires_at, pending_until)] = groups.get((expires_at, pending_until), 0) + take
        for (expires_at, pending_until), pts in groups.items():
            p.credit(
                to_member_id,
                kind=Kind.TRANSFER,
                points=pts,
                occurred_at=p.now,
                available_at=pending_until,
                expires_at=expires_at,
                reason=reason or f"Transfer from member {from_member_id}",
                reference=transfer_ref,
                source_entry_id=debit.id,
            )

    actor_id = getattr(actor, "pk", None)
    payload = {
        "from": from_member_id,
        "to": to_member_id,
        "points": points,
        "reason": reason,
        "actor": actor_id,
        "pending": include_pending,
    }
    return points_post(
        program=program,
        member_ids=[from_member_id, to_member_id],
        operation="transfer",
        payload=payload,
        work=work,
        idempotency_key=idempotency_key,
        now=now,
        actor_id=actor_id,
    )


def idempotency_key_claim(
    *, program: Program, key: str, operation: str, payload: dict[str, Any], now: dt.datetime | None = None
) -> IdempotencyRecord | None:
    """For writes other than postings (a card batch, ...): claim `key` inside the caller's
    transaction. None: the key is new, go on and then `idempotency_key_settle` the result.
    A record: the key was used by the same request before, replay its `result`. Raises
    `IdempotencyConflict` when it was used by a different request. A concurrent claim of the
    same key waits on the unique index until the first transaction ends."""
    _check_key(key)
    request_hash = _request_hash(operation, payload)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {IDEM} (program_id, key, operation, request_hash, entry_ids, result, created_at) "
            "VALUES (%s, %s, %s, %s, '[]', '{}', %s) ON CONFLICT (program_id, key) DO NOTHING RETURNING id",
            [program.id, key, operation, request_hash, now or timezone.now()],
        )
        if cur.fetchone():
            return None
    record = IdempotencyRecord.objects.get(program=program, key=key)
    if record.request_hash != request_hash:
        raise errors.IdempotencyConflict(
            "This idempotency key was used with a different request.", idempotency_key=key, operation=record.operation
        )
    return record


def idempotency_key_settle(*, program: Program, key: str, result: dict[str, Any]) -> None:
    """Store what the request claimed with `idempotency_key_claim` produced (same transaction)."""
    IdempotencyRecord.objects.filter(program=program, key=key).update(result=result)


def points_credit_bulk(
    *,
    program: Program,
    credits: Sequence[tuple[int, int]],
    reason: str,
    actor: Any,
    now: dt.datetime | None = None,
) -> int:
    """Credit many members at once, one staff-adjustment lot each (opening balances of an
    import). Set-based: members locked in id order, lots inserted and balances raised with
    one statement each. Members who owe points go through `points_adjust` (their debt is
    paid first). Joins the caller's transaction, so an import stays all-or-nothing.
    Returns the number of lots written. Queries: 2 + 1 per indebted member."""
    if not (reason or "").strip():
        raise errors.ReasonRequired("Bulk credits need a reason.", field="reason")
    if actor is None or not getattr(actor, "pk", None):
        raise errors.InvalidInput("Bulk credits need the acting staff user.", field="actor")
    for _member_id, points in credits:
        _check_points(points)
    member_ids = [c[0] for c in credits]
    if len(set(member_ids)) != len(member_ids):
        raise errors.InvalidInput("A member appears twice in one bulk credit.", field="credits")
    if not credits:
        return 0
    now = now or timezone.now()
    expires_at = program.expiry_for(now)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            f"SELECT id, program_id, available FROM {MEMBER} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            [sorted(member_ids)],
        )
        rows = {r[0]: r for r in cur.fetchall()}
        for member_id in member_ids:
            if member_id not in rows or rows[member_id][1] != program.id:
                raise errors.MemberNotFound(f"No member {member_id} in this program.", member_id=member_id)
        plain = [(m, p) for m, p in credits if rows[m][2] >= 0]
        cur.execute(
            f"WITH c AS (SELECT * FROM unnest(%(ids)s::bigint[], %(pts)s::bigint[]) AS c(member_id, points)), "
            f"e AS (INSERT INTO {ENTRY} ({', '.join(_ENTRY_COLUMNS)}) "
            "SELECT %(program)s, member_id, 'adjust', points, points, %(now)s, %(now)s, %(now)s, %(now)s, "
            "%(expires)s, %(reason)s, '', NULL, NULL, %(actor)s FROM c RETURNING id, member_id, points) "
            f"UPDATE {MEMBER} m SET available = m.available + e.points FROM e WHERE m.id = e.member_id "
            "RETURNING e.id, e.member_id, e.points",
            {
                "ids": [c[0] for c in plain],
                "pts": [c[1] for c in plain],
                "program": program.id,
                "now": now,
                "expires": expires_at,
                "reason": reason,
                "actor": actor.pk,
            },
        )
        written = cur.fetchall()
    for member_id, points in credits:
        if rows[member_id][2] < 0:
            points_adjust(program=program, member_id=member_id, points=points, reason=reason, actor=actor, now=now)

    def announce() -> None:
        if not points_posted.has_listeners(LedgerEntry):
            return  # nothing to build 10^5 entries for
        for entry_id, member_id, points in written:
            entry = LedgerEntry(
                id=entry_id,
                program_id=program.id,
                member_id=member_id,
                kind=Kind.ADJUST,
                points=points,
                remaining=points,
                created_at=now,
                occurred_at=now,
                available_at=now,
                released_at=now,
                expires_at=expires_at,
                reason=reason,
                created_by_id=actor.pk,
            )
            points_posted.send(sender=LedgerEntry, program=program, member_id=member_id, balance=None, entries=[entry])

    transaction.on_commit(announce)
    return len(credits)


# --------------------------------------------------------------------------------------------
# Set-based jobs: expiry and release of pending points, in chunks, each chunk one transaction.


def _expire_lots_sql() -> str:
    """Expire the lots `%(ids)s` that are still due at `%(now)s`, exactly once each: zero their
    remainder, write one expire entry per member with an allocation per lot, and lower the
    members' balances. The caller holds the members' row locks. The `remaining > 0` recheck
    under the lock is what makes a second run a no-op."""
    return f"""
WITH due AS (
    SELECT id, member_id, program_id, remaining, released_at IS NOT NULL AS released
    FROM {ENTRY}
    WHERE id = ANY(%(ids)s) AND remaining > 0 AND expires_at <= %(now)s
    FOR UPDATE
), zeroed AS (
    UPDATE {ENTRY} e SET remaining = 0 FROM due WHERE e.id = due.id
), per_member AS (
    SELECT member_id, program_id, sum(remaining) AS total, count(*) AS lots,
           coalesce(sum(remaining) FILTER (WHERE released), 0) AS from_available,
           coalesce(sum(remaining) FILTER (WHERE NOT released), 0) AS from_pending
    FROM due GROUP BY member_id, program_id
), debits AS (
    INSERT INTO {ENTRY} (program_id, member_id, kind, points, remaining, created_at, occurred_at,
                         reason, reference)
    SELECT program_id, member_id, 'expire', -total, 0, %(now)s, %(now)s, 'Points expired', ''
    FROM per_member
    RETURNING id, member_id
), allocations AS (
    INSERT INTO {ALLOC} (debit_id, lot_id, points, created_at)
    SELECT debits.id, due.id, due.remaining, %(now)s FROM due JOIN debits USING (member_id)
)
UPDATE {MEMBER} m
SET available = m.available - p.from_available, pending = m.pending - p.from_pending,
    expired = m.expired + p.total
FROM per_member p WHERE m.id = p.member_id
RETURNING m.id, p.total, p.lots
"""


def _release_lots_sql() -> str:
    """Release the pending lots `%(ids)s` due at `%(now)s`: stamp `released_at` once and move
    their remainders from pending to available. Callers hold the members' row locks."""
    return f"""
WITH due AS (
    SELECT id, member_id, remaining FROM {ENTRY}
    WHERE id = ANY(%(ids)s) AND released_at IS NULL AND points > 0 AND available_at <= %(now)s
    FOR UPDATE
), stamped AS (
    UPDATE {ENTRY} e SET released_at = %(now)s FROM due WHERE e.id = due.id
), per_member AS (
    SELECT member_id, sum(remaining) AS total, count(*) AS lots FROM due GROUP BY member_id
)
UPDATE {MEMBER} m SET pending = m.pending - p.total, available = m.available + p.total
FROM per_member p WHERE m.id = p.member_id
RETURNING m.id, p.total, p.lots
"""


# A chunk of expiry is whole members: the members of the next `n` due lots (by the
# expiring-lots index), then all their due lots (by the open-lots index), so that a member
# gets one expire entry per run however many lots expire.
# Keyset: every due lot before the highest expiry among those `n` has been handled by the
# chunk, so the next pick starts there (`%(after)s`). Without it each pick would walk again
# over the index entries of the lots expired earlier in the run, which PostgreSQL can't skip
# while any transaction is open on the server: quadratic in a large backlog.
_EXPIRE_PICK = (
    f"WITH first AS (SELECT member_id, expires_at FROM {ENTRY} WHERE remaining > 0 "
    "AND expires_at IS NOT NULL AND expires_at <= %(now)s AND expires_at >= %(after)s {program} "
    "ORDER BY expires_at LIMIT %(n)s), m AS (SELECT DISTINCT member_id FROM first) "
    f"SELECT e.id, e.member_id, (SELECT max(expires_at) FROM first) FROM {ENTRY} e "
    "JOIN m ON e.member_id = m.member_id WHERE e.remaining > 0 AND e.expires_at <= %(now)s"
)
_RELEASE_PICK = (
    f"WITH first AS (SELECT id, member_id, available_at FROM {ENTRY} WHERE released_at IS NULL AND points > 0 "
    "AND available_at <= %(now)s AND available_at >= %(after)s {program} ORDER BY available_at LIMIT %(n)s) "
    "SELECT id, member_id, (SELECT max(available_at) FROM first) FROM first"
)
_BEGINNING = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


def _run_chunks(
    *,
    job: str,
    pick_sql: str,
    apply_sql: str,
    now: dt.datetime,
    chunk_size: int,
    program: Program | None,
    after_chunk: Callable[[int], None] | None,
) -> JobResult:
    _check_aware(now, "now")
    if chunk_size < 1:
        raise errors.InvalidInput("chunk_size must be positive.", field="chunk_size")
    program_clause = "AND program_id = %(program)s" if program else ""
    params: dict[str, Any] = {
        "now": now,
        "n": chunk_size,
        "program": program.id if program else None,
        "after": _BEGINNING,
    }
    started = timezone.now()
    lots = points = chunks = 0
    members: set[int] = set()
    while True:
        with transaction.atomic(durable=True), connection.cursor() as cur:
            cur.execute(pick_sql.format(program=program_clause), params)
            picked = cur.fetchall()
            if not picked:
                break
            # Members first, in id order, like every posting: no deadlock, no lost update.
            cur.execute(
                f"SELECT id FROM {MEMBER} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [sorted({r[1] for r in picked})]
            )
            cur.execute(apply_sql, {"ids": [r[0] for r in picked], "now": now})
            done = cur.fetchall()
            params["after"] = picked[0][2]
            chunks += 1
            lots += sum(int(r[2]) for r in done)  # not len(picked): a posting may have taken some
            points += sum(int(r[1]) for r in done)
            members.update(r[0] for r in done)
            if after_chunk is not None:
                after_chunk(chunks)
    result = JobResult(lots=lots, points=points, members=len(members), chunks=chunks)
    LedgerJobRun.objects.create(
        job=job,
        as_of=now,
        started_at=started,
        finished_at=timezone.now(),
        lots=lots,
        points=points,
        members=len(members),
    )
    ledger_job_finished.send(sender=LedgerJobRun, job=job, as_of=now, lots=lots, points=points, members=len(members))
    return result


def points_expire(
    *,
    now: dt.datetime,
    chunk_size: int = 20_000,
    program: Program | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> JobResult:
    """Expire every lot whose expiry moment is at or before `now`, set-based, `chunk_size`
    lots per transaction. Idempotent: a second run (or a run after a crash) expires only what
    is still due. `after_chunk` is a hook for tests and progress reporting."""
    return _run_chunks(
        job="expire_points",
        pick_sql=_EXPIRE_PICK,
        apply_sql=_expire_lots_sql(),
        now=now,
        chunk_size=chunk_size,
        program=program,
        after_chunk=after_chunk,
    )


def points_release(
    *,
    now: dt.datetime,
    chunk_size: int = 20_000,
    program: Program | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> JobResult:
    """Make pending lots whose `available_at` has come available. Idempotent like expiry."""
    return _run_chunks(
        job="release_pending_points",
        pick_sql=_RELEASE_PICK,
        apply_sql=_release_lots_sql(),
        now=now,
        chunk_size=chunk_size,
        program=program,
        after_chunk=after_chunk,
    )


# --------------------------------------------------------------------------------------------
# Members and activities


def member_enroll(
    *,
    program: Program,
    external_id: str | None = None,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    birthday: dt.date | None = None,
    channel: str = Member.Channel.ONLINE,
    email_consent: bool = False,
    referred_by: Member | None = None,
    now: dt.datetime | None = None,
) -> tuple[Member, bool]:
    """Enrol a customer. Enrolling an `external_id` already enrolled returns that member and
    False (safe under concurrent calls: the unique index decides). Sends `member_enrolled`."""
    now = now or timezone.now()
    if external_id is not None:
        external_id = str(external_id).strip() or None
    if referred_by is not None and referred_by.program_id != program.id:
        raise errors.InvalidInput("The referrer belongs to another program.", field="referral_code")
    if external_id is not None:
        existing = Member.objects.filter(program=program, external_id=external_id).first()
        if existing is not None:
            return existing, False
    member = Member(
        program=program,
        external_id=external_id,
        email=(email or "").strip().lower(),
        first_name=first_name,
        last_name=last_name,
        birthday=birthday,
        enrollment_channel=channel,
        email_consent=email_consent,
        referred_by=referred_by,
        enrolled_at=now,
    )
    _full_clean(member, exclude=["referral_code", "user"])
    for _attempt in range(5):
        member.referral_code = new_referral_code()
        try:
            with transaction.atomic():
                member.save(force_insert=True)
        except IntegrityError:
            if external_id is not None:
                existing = Member.objects.filter(program=program, external_id=external_id).first()
                if existing is not None:
                    return existing, False
            member.pk = None
            continue  # referral code collision: draw again
        transaction.on_commit(
            lambda: member_enrolled.send(sender=Member, program=program, member=member, channel=channel)
        )
        return member, True
    raise errors.Conflict("Could not allocate a unique referral code; try again.")


def member_set_status(*, member: Member, status: str, actor: Any = None) -> Member:
    """Block or unblock a member. Blocked members neither earn nor spend; staff adjustments,
    refunds and expiry still apply."""
    if status not in Member.Status.values:
        raise errors.InvalidInput(f"Unknown status {status!r}.", field="status")
    with transaction.atomic():
        locked = Member.objects.select_for_update().get(pk=member.pk)
        old = locked.status
        if old != status:
            Member.objects.filter(pk=member.pk).update(status=status)
            transaction.on_commit(
                lambda: member_status_changed.send(
                    sender=Member, program=locked.program, member=locked, old_status=old, new_status=status, actor=actor
                )
            )
    member.status = status
    return member


MEMBER_PROFILE_FIELDS = ("external_id", "email", "first_name", "last_name", "birthday", "email_consent")


def member_update(*, member: Member, **changes: Any) -> Member:
    """Change profile fields of a member (not balances, not status: see `member_set_status`).
    Writes only the changed columns, so balances posted meanwhile are never overwritten."""
    unknown = set(changes) - set(MEMBER_PROFILE_FIELDS)
    if unknown:
        raise errors.InvalidInput(f"Not a profile field: {', '.join(sorted(unknown))}.", fields=sorted(unknown))
    if "email" in changes:
        changes["email"] = (changes["email"] or "").strip().lower()
    if "external_id" in changes:
        changes["external_id"] = str(changes["external_id"] or "").strip() or None
    for name, value in changes.items():
        setattr(member, name, value)
    _full_clean(member, exclude=["referral_code", "user", "program", "referred_by"])
    if changes:
        try:
            with transaction.atomic():
                member.save(update_fields=list(changes))
        except IntegrityError as exc:
            raise errors.Conflict(
                "Another member of this program has this external id.", fields={"external_id": ["already used"]}
            ) from exc
    return member


def activity_record(
    *,
    program: Program,
    member: Member,
    type: str,
    occurred_at: dt.datetime,
    order_id: str = "",
    amount: Decimal | None = None,
    currency: str = "",
    channel: str = "",
    items: Iterable[dict[str, Any]] = (),
    data: dict[str, Any] | None = None,
) -> Activity:
    """Store an activity (the rules of `workflows` decide what it earns)."""
    _check_aware(occurred_at, "occurred_at")
    if member.program_id != program.id:
        raise errors.MemberNotFound("The member belongs to another program.", member_id=member.pk)
    if type == Activity.Type.PURCHASE and not order_id:
        raise errors.InvalidInput("A purchase needs an order id.", field="order_id")
    if amount is not None and Decimal(amount) < 0:
        raise errors.InvalidInput("The amount must not be negative.", field="amount")
    activity = Activity(
        program=program,
        member=member,
        type=type,
        occurred_at=occurred_at,
        order_id=order_id,
        amount=amount,
        currency=currency or (program.currency if amount is not None else ""),
        channel=channel,
        items=list(items),
        data=data or {},
    )
    # The member and program are objects already; the database checks the constraints
    # (an IntegrityError below), so validation stays free of queries.
    _full_clean(activity, exclude=["program", "member"], validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            activity.save(force_insert=True)
    except IntegrityError as exc:
        raise errors.Conflict(f"Order {order_id!r} was already reported.", order_id=order_id) from exc
    return activity


def program_create(*, name: str, slug: str, **fields: Any) -> Program:
    program = Program(name=name, slug=slug, **fields)
    _full_clean(program)
    program.save()
    return program
