"""The SQL of the ledger: table names, the entry columns and the statements that write entries,
allocations and members' balances.

Only `loyalty.services.posting` (one member's postings) and `loyalty.services.jobs` (the set-based
expiry and release) may import this module: an import-linter contract in pyproject.toml enforces
it, so no other code can write the ledger behind the posting's back (docs/architecture.md, the
ledger's rules). Every statement takes its values as parameters; only our own table and column
names are formatted in.
"""

from __future__ import annotations

from loyalty.models import IdempotencyRecord, LedgerEntry, Member

ENTRY = LedgerEntry._meta.db_table
ALLOC = "loyalty_allocation"
MEMBER = Member._meta.db_table
IDEM = IdempotencyRecord._meta.db_table

ENTRY_COLUMNS = (
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
BALANCES = ("available", "pending", "lifetime_earned", "redeemed", "expired")
INSERT_ENTRY = (
    f"INSERT INTO {ENTRY} ({', '.join(ENTRY_COLUMNS)}) VALUES ({', '.join(['%s'] * len(ENTRY_COLUMNS))}) RETURNING id"
)
INSERT_ENTRY_NAMED = (
    f"INSERT INTO {ENTRY} ({', '.join(ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join(f'%(e_{c})s' for c in ENTRY_COLUMNS)}) RETURNING id"
)

# Opening balances of an import: one lot per (member, points) pair, balances raised in the same
# statement. The caller holds the members' row locks and has left out members in debt.
BULK_CREDIT = (
    f"WITH c AS (SELECT * FROM unnest(%(ids)s::bigint[], %(pts)s::bigint[]) AS c(member_id, points)), "
    f"e AS (INSERT INTO {ENTRY} ({', '.join(ENTRY_COLUMNS)}) "
    "SELECT %(program)s, member_id, %(kind)s, points, points, %(now)s, %(now)s, %(now)s, %(now)s, "
    "%(expires)s, %(reason)s, '', NULL, NULL, %(actor)s FROM c RETURNING id, member_id, points) "
    f"UPDATE {MEMBER} m SET available = m.available + e.points, "
    "lifetime_earned = m.lifetime_earned + CASE WHEN %(kind)s = 'earn' THEN e.points ELSE 0 END "
    "FROM e WHERE m.id = e.member_id "
    "RETURNING e.id, e.member_id, e.points"
)


# The columns that differ between the lots of one fast credit (the rest is the posting's).
LOT_COLUMNS = (
    ("kind", "text"),
    ("points", "bigint"),
    ("occurred_at", "timestamptz"),
    ("available_at", "timestamptz"),
    ("released_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("reason", "text"),
    ("reference", "text"),
    ("activity_id", "bigint"),
    ("source_entry_id", "bigint"),
)


def _fast_credit(with_key: bool) -> str:
    """One statement for the common credit of one member, one lot or several (the awards of
    one activity): lock the member row, and only if the member is active and owes nothing,
    record the idempotency key, insert the lots (one row per element of the `%(l_<column>)s`
    arrays, ids in array order) and add to the balances. It runs as its own transaction
    (autocommit) or inside the caller's. When the conditions don't hold it writes nothing and
    says why (the general path takes over); when the key exists already it writes nothing
    and the first result is replayed.

    Row-lock note: `locked` takes the FOR UPDATE lock; the UPDATE of the same row then applies
    its increments to the newest committed version (READ COMMITTED re-check), like any
    `SET x = x + n`."""
    lot_names = [c for c, _t in LOT_COLUMNS]
    unnest = ", ".join(f"%(l_{c})s::{t}[]" for c, t in LOT_COLUMNS)
    key_cte = (
        f", k AS (INSERT INTO {IDEM} (program_id, key, operation, request_hash, member_id, entry_ids, result, "
        "created_at) SELECT %(program_id)s, %(key)s, %(op)s, %(hash)s, %(member_id)s, "
        "(SELECT to_jsonb(array_agg(id ORDER BY ord)) FROM lots), %(result)s::jsonb, %(created_at)s FROM go "
        "ON CONFLICT (program_id, key) DO NOTHING RETURNING id)"
    )
    values = [
        f"lots.{c}" if c in lot_names else ("lots.points" if c == "remaining" else f"%({c})s") for c in ENTRY_COLUMNS
    ]
    return (
        f"WITH locked AS (SELECT id, status, available FROM {MEMBER} "
        "WHERE id = %(member_id)s AND program_id = %(program_id)s FOR UPDATE), "
        "go AS (SELECT 1 AS ok FROM locked WHERE status = 'active' AND available >= 0), "
        f"lots AS (SELECT nextval(pg_get_serial_sequence('{ENTRY}', 'id')) AS id, l.* FROM go, "
        f"unnest({unnest}) WITH ORDINALITY AS l({', '.join(lot_names)}, ord))"
        + (key_cte if with_key else "")
        + f", e AS (INSERT INTO {ENTRY} (id, {', '.join(ENTRY_COLUMNS)}) "
        f"SELECT lots.id, {', '.join(values)} FROM lots"
        + (" WHERE EXISTS (SELECT 1 FROM k)" if with_key else "")
        + " RETURNING id), "
        f"m AS (UPDATE {MEMBER} m SET available = m.available + %(d_available)s, pending = m.pending + %(d_pending)s, "
        "lifetime_earned = m.lifetime_earned + %(d_lifetime_earned)s WHERE m.id = %(member_id)s "
        f"AND EXISTS (SELECT 1 FROM e) RETURNING {', '.join(f'm.{c}' for c in BALANCES)}) "
        "SELECT (SELECT status FROM locked), (SELECT available FROM locked), "
        "(SELECT array_agg(lots.id ORDER BY lots.ord) FROM lots WHERE EXISTS (SELECT 1 FROM e)), m.* "
        "FROM (SELECT 1) AS one LEFT JOIN m ON true"
    )


FAST_CREDIT = {True: _fast_credit(True), False: _fast_credit(False)}


def _expire_lots() -> str:
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


def _release_lots() -> str:
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
EXPIRE_PICK = (
    f"WITH first AS (SELECT member_id, expires_at FROM {ENTRY} WHERE remaining > 0 "
    "AND expires_at IS NOT NULL AND expires_at <= %(now)s AND expires_at >= %(after)s {program} "
    "ORDER BY expires_at LIMIT %(n)s), m AS (SELECT DISTINCT member_id FROM first) "
    f"SELECT e.id, e.member_id, (SELECT max(expires_at) FROM first) FROM {ENTRY} e "
    "JOIN m ON e.member_id = m.member_id WHERE e.remaining > 0 AND e.expires_at <= %(now)s"
)
RELEASE_PICK = (
    f"WITH first AS (SELECT id, member_id, available_at FROM {ENTRY} WHERE released_at IS NULL AND points > 0 "
    "AND available_at <= %(now)s AND available_at >= %(after)s {program} ORDER BY available_at LIMIT %(n)s) "
    "SELECT id, member_id, (SELECT max(available_at) FROM first) FROM first"
)

EXPIRE_LOTS = _expire_lots()
RELEASE_LOTS = _release_lots()


# A lot held for review (docs/fraud.md) carries this far-future `available_at`, so neither the
# release job nor a posting's settle ever releases it; the review stamps `released_at` itself.
# Year 9000, not 9999: shown in any time zone it stays a valid date.
HELD_UNTIL_SQL = "9000-01-01T00:00:00+00:00"

# Release the held lots of one activity now: stamp `released_at` once; the points move from
# pending to available through the posting's deltas (the caller holds the member's lock).
RELEASE_HELD = (
    f"WITH due AS (SELECT id, remaining FROM {ENTRY} WHERE activity_id = %(activity)s AND member_id = %(m)s "
    "AND points > 0 AND released_at IS NULL AND available_at >= %(held)s FOR UPDATE), "
    f"stamped AS (UPDATE {ENTRY} e SET released_at = %(now)s FROM due WHERE e.id = due.id) "
    "SELECT coalesce(sum(remaining), 0)::bigint, count(*) FROM due"
)
# What is still held of one activity's lots (for a rejection's reversal).
HELD_REMAINING = (
    f"SELECT coalesce(sum(remaining), 0)::bigint FROM {ENTRY} WHERE activity_id = %(activity)s "
    "AND member_id = %(m)s AND points > 0 AND released_at IS NULL AND available_at >= %(held)s"
)
