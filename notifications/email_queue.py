"""Set-based writers of outbox rows (docs/emails.md, "When each email is sent").

`emails.message_queue` writes one message for one member; the events here write several rows,
or rows whose facts live in other tables, with ONE `INSERT ... SELECT ... ON CONFLICT DO
NOTHING` each, inside the event's transaction: a redemption (the member's message and the
admin's copy), a chunk of tier changes of the nightly evaluation, the rewards a posting brought
within reach, the members of an import. Like `message_queue`, nothing is written for a kind the
program does not send (no statement at all), for a member without an address, or (marketing
kinds) without consent, and the unique (program, member, kind, source) keeps one row per event
whatever retries or re-runs do. Each returns the new rows' ids, already handed to
`emails.messages_queued` (sent after commit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone

from loyalty.models import Member
from loyalty.presence import TtlCache
from rewards.models import Redemption, Reward
from rewards.selectors import LIMIT_STATUSES
from tiers.models import MemberTier, Tier, TierChange

from . import emails
from .email_kinds import EmailKind
from .models import EmailMessage

_MESSAGES = EmailMessage._meta.db_table
_MEMBERS = Member._meta.db_table
_COLUMNS = (
    "program_id, member_id, kind, source, data, status, attempts, next_attempt_at, "
    "to_email, subject, language, esp_message_id, last_error, created_at"
)


def _written(cursor: Any) -> list[int]:
    ids = [row[0] for row in cursor.fetchall()]
    emails.messages_queued(ids)
    return ids


# --------------------------------------------------------------------------------------------
# A redemption: the member's message and the admin's copy in one statement


# ON CONFLICT without a target covers both partial unique indexes (member rows, staff rows).
_REDEEMED_SQL = f"""
INSERT INTO {_MESSAGES} ({_COLUMNS})
SELECT m.program_id,
       CASE WHEN k.kind = 'reward_redeemed' THEN m.id END,
       k.kind, %(source)s,
       CASE WHEN k.kind = 'reward_redeemed' THEN %(data)s::jsonb
            ELSE %(data)s::jsonb || jsonb_build_object('customer', jsonb_build_object(
                'id', m.id, 'email', m.email, 'name', trim(concat_ws(' ', m.first_name, m.last_name))))
       END,
       'queued', 0, %(now)s,
       CASE WHEN k.kind = 'reward_redeemed' THEN '' ELSE %(admin)s END,
       '', '', '', '', %(now)s
FROM {_MEMBERS} m CROSS JOIN unnest(%(kinds)s::text[]) AS k(kind)
WHERE m.id = %(member)s AND (k.kind <> 'reward_redeemed' OR m.email <> '')
ON CONFLICT DO NOTHING
RETURNING id
"""


def coupon_data(*, program: Any, redemption: Redemption, reward_name: str) -> dict[str, Any]:
    """A coupon as its emails show it (plain data). `valid_until` is the last local day it can
    be used (it expires at the start of the next, rewards.services._coupon_expiry)."""
    value = redemption.value
    return {
        "code": redemption.code,
        "reward": reward_name,
        "reward_kind": redemption.kind,
        "value": None if value is None else str(Decimal(value).quantize(Decimal("0.01"))),
        "valid_until": (
            None
            if redemption.expires_at is None
            else (program.local_date(redemption.expires_at) - dt.timedelta(days=1)).isoformat()
        ),
        "sku": redemption.sku,
    }


def redemption_messages_queue(*, program: Any, redemption: Redemption, member_id: int) -> list[int]:
    """The reward_redeemed message to the member and its reward_redeemed_admin copy to the
    program's admin address, for the kinds the program sends: 1 statement (0 when neither)."""
    settings_row = emails.program_settings(program.id)
    kinds = []
    if settings_row.sends(EmailKind.REWARD_REDEEMED):
        kinds.append(EmailKind.REWARD_REDEEMED.value)
    if settings_row.sends(EmailKind.REWARD_REDEEMED_ADMIN) and settings_row.admin_email:
        kinds.append(EmailKind.REWARD_REDEEMED_ADMIN.value)
    if not kinds:
        return []
    data = {
        "points": redemption.points,
        "redemption_id": redemption.pk,
        "coupon": coupon_data(program=program, redemption=redemption, reward_name=redemption.reward.name),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            _REDEEMED_SQL,
            {
                "source": f"redemption:{redemption.pk}",
                "data": emails._json(data),
                "now": redemption.issued_at or timezone.now(),
                "admin": settings_row.admin_email,
                "kinds": kinds,
                "member": member_id,
            },
        )
        return _written(cursor)


# --------------------------------------------------------------------------------------------
# Tier changes: one statement per batch (one change, or a chunk of the nightly evaluation)

_TIERS_SQL = f"""
INSERT INTO {_MESSAGES} ({_COLUMNS})
SELECT m.program_id, m.id, x.kind, 'tier_change:' || c.id,
       jsonb_build_object(
           'change_id', c.id,
           'tier', jsonb_build_object(
               'name', coalesce(t.name, ''), 'benefits', coalesce(t.benefits, ''),
               'multiplier', coalesce(rtrim(rtrim(t.multiplier::text, '0'), '.'), '')),
           'previous_tier', jsonb_build_object('name', coalesce(f.name, ''))),
       'queued', 0, %(now)s, '', '', '', '', '', %(now)s
FROM {TierChange._meta.db_table} c
JOIN {_MEMBERS} m ON m.id = c.member_id
LEFT JOIN {Tier._meta.db_table} t ON t.id = c.to_tier_id
LEFT JOIN {Tier._meta.db_table} f ON f.id = c.from_tier_id
CROSS JOIN LATERAL (SELECT CASE
    WHEN t.id IS NOT NULL AND (f.id IS NULL OR t.position > f.position) THEN 'tier_upgraded'
    WHEN f.id IS NOT NULL AND (t.id IS NULL OR t.position < f.position) THEN 'tier_downgraded'
END AS kind) x
WHERE c.id = ANY(%(ids)s) AND m.email <> '' AND x.kind = ANY(%(kinds)s)
ON CONFLICT DO NOTHING
RETURNING id
"""


def tier_messages_queue(*, program: Any, change_ids: Sequence[int], now: dt.datetime | None = None) -> list[int]:
    """tier_upgraded / tier_downgraded for these changes (by the tiers' positions; a manual
    tier that changes nothing writes nothing): 1 statement for the whole batch, 0 when the
    program sends neither kind."""
    settings_row = emails.program_settings(program.id)
    kinds = [k.value for k in (EmailKind.TIER_UPGRADED, EmailKind.TIER_DOWNGRADED) if settings_row.sends(k)]
    if not kinds or not change_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_TIERS_SQL, {"ids": list(change_ids), "kinds": kinds, "now": now or timezone.now()})
        return _written(cursor)


# --------------------------------------------------------------------------------------------
# Rewards within reach

# The costs of each program's active rewards with a fixed price (or, points as money off, their
# minimum), asked after every posting that raises a balance: kept a few seconds per process and
# forgotten when a reward is saved in this process (stock and tiers are checked by the insert).
_reward_costs: TtlCache[tuple[tuple[int, int], ...]] = TtlCache(ttl=10.0)


def reward_costs_forget(*args: object, **kwargs: object) -> None:
    _reward_costs.clear()


def reward_costs(program_id: int) -> tuple[tuple[int, int], ...]:
    """(reward id, points) of the program's active rewards, cheapest first. Cached; 1 query."""

    def load() -> tuple[tuple[int, int], ...]:
        rows = Reward.objects.filter(program_id=program_id, is_active=True).values_list(
            "id", "cost_points", "points_min", "kind"
        )
        costs = []
        for reward_id, cost, points_min, kind in rows:
            points = (points_min or 0) if kind == Reward.Kind.POINTS_FOR_AMOUNT else (cost or 0)
            if points > 0:
                costs.append((reward_id, points))
        return tuple(sorted(costs, key=lambda c: (c[1], c[0])))

    return _reward_costs.get(program_id, load)


_WITHIN_REACH_SQL = f"""
INSERT INTO {_MESSAGES} ({_COLUMNS})
SELECT m.program_id, m.id, 'reward_within_reach', 'reward:' || r.id || ':entry:' || %(entry)s,
       jsonb_build_object('reward', jsonb_build_object(
           'id', r.id, 'name', r.name, 'description', r.description,
           'points', coalesce(r.cost_points, r.points_min))),
       'queued', 0, %(now)s, '', '', '', '', '', %(now)s
FROM {Reward._meta.db_table} r
JOIN {_MEMBERS} m ON m.id = %(member)s
LEFT JOIN {MemberTier._meta.db_table} mt ON mt.member_id = m.id
LEFT JOIN {Tier._meta.db_table} mine ON mine.id = mt.tier_id
LEFT JOIN {Tier._meta.db_table} needed ON needed.id = r.min_tier_id
WHERE r.id = ANY(%(rewards)s) AND r.program_id = m.program_id AND r.is_active
  AND (r.starts_at IS NULL OR r.starts_at <= %(now)s) AND (r.ends_at IS NULL OR r.ends_at > %(now)s)
  AND (r.stock IS NULL OR r.issued_count < r.stock)
  AND (r.min_tier_id IS NULL OR mine.position >= needed.position)
  AND (r.per_member_limit IS NULL OR (
      SELECT count(*) FROM {Redemption._meta.db_table} d
      WHERE d.member_id = m.id AND d.reward_id = r.id AND d.status = ANY(%(held)s)) < r.per_member_limit)
  AND m.email <> '' AND m.email_consent AND m.status = 'active'
ON CONFLICT DO NOTHING
RETURNING id
"""


def within_reach_messages_queue(
    *, program: Any, member_id: int, before: int, after: int, first_entry_id: int, now: dt.datetime
) -> list[int]:
    """reward_within_reach for each reward whose cost the member's available balance crossed
    (before < cost <= after) and that the member can take now (active, in its window, in stock,
    for the member's tier, under the per-member limit): 0 statements when no cost was crossed
    (reward costs cached per process), else 1. Once per reward and crossing: the source names
    the reward and the posting's first entry."""
    if after <= before or not emails.program_sends(program.id, EmailKind.REWARD_WITHIN_REACH):
        return []
    crossed = [reward_id for reward_id, cost in reward_costs(program.id) if before < cost <= after]
    if not crossed:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _WITHIN_REACH_SQL,
            {
                "rewards": crossed,
                "member": member_id,
                "entry": str(first_entry_id),
                "now": now,
                "held": [str(s) for s in LIMIT_STATUSES],
            },
        )
        return _written(cursor)


# --------------------------------------------------------------------------------------------
# Imports

_WELCOME_SQL = f"""
INSERT INTO {_MESSAGES} ({_COLUMNS})
SELECT m.program_id, m.id, 'welcome', 'enrolled', '{{"imported": true}}'::jsonb,
       'queued', 0, %(now)s, '', '', '', '', '', %(now)s
FROM {_MEMBERS} m
WHERE m.id = ANY(%(ids)s) AND m.program_id = %(program)s AND m.email <> ''
ON CONFLICT DO NOTHING
RETURNING id
"""


def import_welcome_queue(*, program: Any, member_ids: Sequence[int], now: dt.datetime | None = None) -> list[int]:
    """The welcome message for the members an import created, when the program's settings ask
    for it (`EmailSettings.welcome_on_import`): 1 statement for all of them, 0 otherwise. The
    source is the enrolment's ("enrolled"), so a member gets one welcome however they came."""
    settings_row = emails.program_settings(program.id)
    if not member_ids or not settings_row.welcome_on_import or not settings_row.sends(EmailKind.WELCOME):
        return []
    with connection.cursor() as cursor:
        cursor.execute(_WELCOME_SQL, {"ids": list(member_ids), "program": program.id, "now": now or timezone.now()})
        return _written(cursor)
