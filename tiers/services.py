"""Writes of the tiers app: upgrade on activity, manual tiers, the nightly set-based evaluation.

Rules (docs/tiers.md):
- Upgrades happen at once (`tier_evaluate_member`, called after points are posted and by the
  workflows app after a purchase); that path never downgrades.
- A tier reached (by upgrade, downgrade or the end of a manual tier) is kept at least its
  `retention_days` (`retain_until`). The nightly `tiers_evaluate` moves members whose metric
  fell below their tier and whose retention passed to the highest tier they still reach (or
  none), upgrades those who reach higher, and ends manual tiers that are due.
- A manual tier (`tier_set_manual`) is left alone until `manual_until`; then it is evaluated.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from loyalty import errors
from loyalty.chunks import member_id_ranges
from loyalty.models import Member, Program

from . import selectors
from .events import announce_tier_changes, tier_changed_event
from .models import MemberTier, Tier, TierChange

logger = logging.getLogger(__name__)


def _retain_until(tier: Tier | None, now: dt.datetime) -> dt.datetime | None:
    return now + dt.timedelta(days=tier.retention_days) if tier is not None else None


def _locked_state(member: Member, now: dt.datetime) -> MemberTier:
    """The member's MemberTier row, created empty if missing, locked for this transaction."""
    MemberTier.objects.get_or_create(member_id=member.pk, defaults={"since": now})
    return MemberTier.objects.select_for_update(of=("self",)).select_related("tier").get(member_id=member.pk)


def tier_evaluate_member(*, member: Member, now: dt.datetime | None = None) -> TierChange | None:
    """Upgrade the member at once if their metric reaches a higher tier; never downgrades.
    A manual tier still running is left alone. Returns the change or None. Not durable: may
    run inside the caller's transaction (workflows after a purchase)."""
    now = now or timezone.now()
    program = member.program
    if not selectors.active_tiers(program=program):
        return None
    value = selectors.member_metric(member=member, now=now)
    target = selectors.qualifying_tier(program=program, value=value)
    if target is None:
        return None
    with transaction.atomic():
        state = _locked_state(member, now)
        if state.manual_until is not None and state.manual_until > now:
            return None
        current = state.tier
        if current is not None and current.position >= target.position:
            return None
        state.tier = target
        state.since = now
        state.retain_until = _retain_until(target, now)
        state.manual_until = None
        state.manual_reason = ""
        state.save()
        return tier_changed_event(
            program=program,
            member_id=member.pk,
            from_tier=current,
            to_tier=target,
            kind=TierChange.Kind.UPGRADE,
            at=now,
            metric_value=value,
        )


@transaction.atomic
def tier_set_manual(
    *,
    member: Member,
    tier: Tier | None,
    until: dt.datetime,
    reason: str,
    actor: Any = None,
    now: dt.datetime | None = None,
    notify_member: bool = True,
) -> TierChange:
    """Staff set the member's tier (or none) until `until`; evaluation leaves it alone until
    then. `reason` is required; the tier must belong to the member's program.
    `notify_member=False`: the in-transaction receivers are told not to email the member."""
    now = now or timezone.now()
    reason = (reason or "").strip()
    if not reason:
        raise errors.InvalidInput("A reason is required.", field="reason")
    if until is None or timezone.is_naive(until):
        raise errors.InvalidInput("The end date must be a time with a time zone.", field="until")
    if until <= now:
        raise errors.InvalidInput("The end date must be in the future.", field="until")
    if tier is not None and tier.program_id != member.program_id:
        raise errors.InvalidInput("The tier belongs to another program.", field="tier")
    state = _locked_state(member, now)
    current = state.tier
    state.tier = tier
    if current != tier:
        state.since = now
    state.retain_until = None
    state.manual_until = until
    state.manual_reason = reason[:255]
    state.save()
    return tier_changed_event(
        program=member.program,
        member_id=member.pk,
        from_tier=current,
        to_tier=tier,
        kind=TierChange.Kind.MANUAL,
        at=now,
        actor=actor,
        reason=reason[:255],
        notify_member=notify_member,
    )


# One chunk of the nightly run, one statement: the metric of each member of the chunk, the
# highest active tier it reaches, the decision per member, the MemberTier upsert and the
# TierChange rows. Members whose state does not change are not written (idempotent).
_EVALUATE_SQL = """
WITH tiers AS (
    SELECT id, position, threshold, retention_days FROM tiers_tier
    WHERE program_id = %(program)s AND is_active
),
metric AS ({metric}),
state AS (
    SELECT m.id AS member_id, COALESCE(x.value, 0) AS value,
           mt.tier_id AS cur_tier, ct.position AS cur_pos, mt.retain_until, mt.manual_until,
           q.id AS q_tier, q.position AS q_pos, q.retention_days AS q_ret
    FROM loyalty_member m
    LEFT JOIN metric x ON x.member_id = m.id
    LEFT JOIN tiers_membertier mt ON mt.member_id = m.id
    LEFT JOIN tiers_tier ct ON ct.id = mt.tier_id
    LEFT JOIN LATERAL (
        SELECT t.id, t.position, t.retention_days FROM tiers t
        WHERE t.threshold <= COALESCE(x.value, 0) ORDER BY t.position DESC LIMIT 1
    ) q ON TRUE
    WHERE m.program_id = %(program)s AND m.id >= %(lo)s AND m.id < %(hi)s
),
changes AS (
    SELECT *, CASE
        WHEN manual_until IS NOT NULL AND manual_until <= %(now)s THEN 'manual_expired'
        WHEN manual_until IS NOT NULL THEN NULL
        WHEN q_tier IS NOT NULL AND (cur_tier IS NULL OR q_pos > cur_pos) THEN 'upgrade'
        WHEN cur_tier IS NOT NULL AND (q_tier IS NULL OR q_pos < cur_pos)
             AND (retain_until IS NULL OR retain_until <= %(now)s) THEN 'downgrade'
    END AS kind
    FROM state
),
due AS (SELECT * FROM changes WHERE kind IS NOT NULL),
upserted AS (
    INSERT INTO tiers_membertier AS mt (member_id, tier_id, since, retain_until, manual_until, manual_reason)
    SELECT member_id, q_tier, %(now)s,
           CASE WHEN q_tier IS NULL THEN NULL ELSE %(now)s + q_ret * INTERVAL '1 day' END, NULL, ''
    FROM due
    ON CONFLICT (member_id) DO UPDATE SET
        since = CASE WHEN mt.tier_id IS NOT DISTINCT FROM EXCLUDED.tier_id THEN mt.since ELSE EXCLUDED.since END,
        tier_id = EXCLUDED.tier_id,
        retain_until = EXCLUDED.retain_until,
        manual_until = NULL,
        manual_reason = ''
    RETURNING mt.member_id
)
INSERT INTO tiers_tierchange (member_id, from_tier_id, to_tier_id, kind, metric_value, actor_id, at, reason)
SELECT d.member_id, d.cur_tier, d.q_tier, d.kind, d.value, NULL, %(now)s, 'nightly evaluation'
FROM due d JOIN upserted u ON u.member_id = d.member_id
RETURNING id, member_id, from_tier_id, to_tier_id, kind, metric_value, at, reason
"""


@dataclass(frozen=True)
class EvaluateResult:
    members: int = 0
    upgrades: int = 0
    downgrades: int = 0
    manual_expired: int = 0
    chunks: int = 0


def _chunk_bounds(program: Program, chunk_size: int) -> list[tuple[int, int]]:
    """[lo, hi) member-id ranges of about `chunk_size` members each (keyset on the pk)."""
    return list(member_id_ranges(program_id=program.pk, chunk_size=chunk_size))


def _evaluate_chunk(
    program: Program, lo: int, hi: int, now: dt.datetime, start: dt.datetime | None
) -> list[TierChange]:
    params = {"program": program.pk, "lo": lo, "hi": hi, "now": now, "start": start}
    sql = _EVALUATE_SQL.format(metric=selectors.METRIC_SQL[program.tier_metric])
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner overestimates this statement and JIT-compiles it in every chunk (0.4-0.7 s
        # each, measured by bench/bench_tiers.py): off for this transaction only.
        cursor.execute("SET LOCAL jit = off")
        # Lock the chunk's tier rows in pk order first, so an upgrade committed meanwhile by
        # `tier_evaluate_member` is seen by the statement below (READ COMMITTED snapshot).
        cursor.execute(
            "SELECT member_id FROM tiers_membertier WHERE member_id >= %s AND member_id < %s"
            " ORDER BY member_id FOR UPDATE",
            [lo, hi],
        )
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        changes = [
            TierChange(
                id=r[0],
                member_id=r[1],
                from_tier_id=r[2],
                to_tier_id=r[3],
                kind=r[4],
                metric_value=r[5],
                at=r[6],
                reason=r[7],
            )
            for r in rows
        ]
        announce_tier_changes(program=program, changes=changes)
    return changes


def tiers_evaluate(*, now: dt.datetime, chunk_size: int = 20_000, program: Program | None = None) -> EvaluateResult:
    """The nightly evaluation of every member of every program with tiers (or of `program`'s),
    as of `now`: set-based SQL per chunk of members (one transaction each), idempotent (a second
    run with the same `now` changes nothing)."""
    if timezone.is_naive(now):
        raise errors.InvalidInput("now must be timezone-aware.", field="now")
    counts = {"upgrade": 0, "downgrade": 0, "manual_expired": 0}
    members = chunks = 0
    programs = Program.objects.filter(pk__in=Tier.objects.values("program_id")).order_by("pk")
    if program is not None:
        programs = programs.filter(pk=program.pk)
    for one in programs:
        start = selectors.window_start(program=one, now=now)
        for lo, hi in _chunk_bounds(one, chunk_size):
            for change in _evaluate_chunk(one, lo, hi, now, start):
                counts[change.kind] += 1
                members += 1
            chunks += 1
    result = EvaluateResult(
        members=members,
        upgrades=counts["upgrade"],
        downgrades=counts["downgrade"],
        manual_expired=counts["manual_expired"],
        chunks=chunks,
    )
    logger.info("tiers_evaluate as of %s: %s", now.isoformat(), result)
    return result


def tier_order_error(
    *, program_id: int, position: int, threshold: Decimal, exclude_id: int | None = None
) -> str | None:
    """Why a tier at `position` with `threshold` would break the program's order, or None.
    Thresholds must not fall as positions rise (docs/tiers.md): among the program's active
    tiers, none below may need more and none above may need less. Equal thresholds are
    allowed. 1 query."""
    others = Tier.objects.filter(program_id=program_id, is_active=True)
    if exclude_id is not None:
        others = others.exclude(pk=exclude_id)
    clash = (
        others.filter(
            Q(position__lt=position, threshold__gt=threshold) | Q(position__gt=position, threshold__lt=threshold)
        )
        .order_by("position")
        .first()
    )
    if clash is None:
        return None
    if clash.position < position:
        return (
            f"The threshold {threshold} is below the threshold of {clash.name} ({clash.threshold}, position "
            f"{clash.position}): a higher tier must need at least as much as the tiers below it."
        )
    return (
        f"The threshold {threshold} is above the threshold of {clash.name} ({clash.threshold}, position "
        f"{clash.position}): a lower tier must need at most as much as the tiers above it."
    )


def tier_create(
    *,
    program: Program,
    name: str,
    position: int,
    threshold: Decimal,
    multiplier: Decimal = Decimal(1),
    benefits: str = "",
    retention_days: int = 0,
) -> Tier:
    """Add a tier to a program (the admin's form makes the same checks). A threshold out of
    order with the program's other active tiers (`tier_order_error`): `InvalidInput`."""
    tier = Tier(
        program=program,
        name=name,
        position=position,
        threshold=threshold,
        multiplier=multiplier,
        benefits=benefits,
        retention_days=retention_days,
    )
    try:
        tier.full_clean()
    except ValidationError as exc:
        raise errors.InvalidInput("Invalid tier.", fields=exc.message_dict) from exc
    problem = tier_order_error(program_id=program.pk, position=position, threshold=tier.threshold)
    if problem is not None:
        raise errors.InvalidInput(problem, field="threshold")
    tier.save()
    return tier


IMPORT_MANUAL_DAYS = 365  # how long a tier named by a member import stays manual (docs/cards.md)


def tier_names_unknown(*, program: Program, names: list[str]) -> list[str]:
    """The names that match no active tier of `program` (case-insensitive). 1 query."""
    known = {n.casefold() for n in Tier.objects.filter(program=program, is_active=True).values_list("name", flat=True)}
    return [n for n in names if n.casefold() not in known]


def tiers_set_manual_by_name(
    *,
    program: Program,
    assignments: list[tuple[int, str]],
    reason: str,
    actor: Any = None,
    now: dt.datetime | None = None,
) -> int:
    """Give each (member id, tier name) the named active tier of `program` as a manual tier for
    `IMPORT_MANUAL_DAYS` (member imports). A member who has that tier manually already is left
    alone. Raises `InvalidInput` for an unknown name. Joins the caller's transaction; members
    are handled in id order, one `tier_set_manual` each. Returns how many were set."""
    now = now or timezone.now()
    tiers = {t.name.casefold(): t for t in Tier.objects.filter(program=program, is_active=True)}
    wanted: dict[int, Tier] = {}
    for member_id, name in assignments:
        tier = tiers.get(name.casefold())
        if tier is None:
            raise errors.InvalidInput(f"No tier of this program is named {name!r}.", field="tier")
        wanted[member_id] = tier
    if not wanted:
        return 0
    already = set(
        MemberTier.objects.filter(member_id__in=wanted, manual_until__gt=now).values_list("member_id", "tier_id")
    )
    members = Member.objects.in_bulk(sorted(wanted))
    until = now + dt.timedelta(days=IMPORT_MANUAL_DAYS)
    done = 0
    for member_id in sorted(wanted):
        tier = wanted[member_id]
        if (member_id, tier.pk) in already:
            continue
        member = members[member_id]
        member.program = program
        # Migrated customers are not emailed about the tier they already had elsewhere.
        tier_set_manual(member=member, tier=tier, until=until, reason=reason, actor=actor, now=now, notify_member=False)
        done += 1
    return done
