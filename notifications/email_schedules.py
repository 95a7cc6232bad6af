"""The scheduled member emails (docs/emails.md, "Scheduled emails"): expiry warnings, periodic
point statements and tier-at-risk warnings.

Each job walks every program that sends its kind, in the program's time zone, and queues its
messages set-based: one `INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING id` per chunk of
members by id (`loyalty.chunks.member_id_ranges`), one transaction per chunk; the new ids go to
`emails.messages_queued` so they are sent after the chunk commits. Never one query per member.

Idempotent: each message's `source` names what it is about, and the outbox keeps one message
per (member, kind, source), so a second run (or a re-run after a crash) queues nothing new:
- points_expiring: `expiring:<date>` (a warning, per member, named after the latest expiry day
  it covers; a member gets a new warning only when a lot expiring after that day comes within
  the window) and `last_chance:<date>` (the day before the lots of `<date>` expire);
- points_reminder: the period, `2026-12` (monthly) or `2026-Q4` (quarterly); a program done for
  a period is recorded (`EmailScheduleRun`) so later runs in the period skip it;
- tier_at_risk: `tier_at_risk:<tier id>:<evaluation date>`.
Who gets what is decided when the row is written (address, active member, consent for the
marketing kinds); `emails.message_send` checks the kind, the consent, opt-outs and
suppressions again when it sends.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from loyalty.chunks import member_id_ranges
from loyalty.models import LedgerEntry, Member, Program

from . import email_context, email_kinds, emails
from .email_kinds import EmailKind
from .models import EmailMessage, EmailScheduleRun, EmailSettings

logger = logging.getLogger(__name__)

CHUNK_SIZE = 20_000
# The nightly tier evaluation (tiers migration 0002's beat entry "Evaluate tiers"): 02:30 UTC.
TIER_EVALUATION_TIME_UTC = dt.time(2, 30)
ROLLING_DEFAULT_DAYS = 365  # tiers.selectors.DEFAULT_ROLLING_DAYS

_MESSAGES = EmailMessage._meta.db_table
_MEMBERS = Member._meta.db_table
_ENTRIES = LedgerEntry._meta.db_table

_INSERT = f"""
INSERT INTO {_MESSAGES} (program_id, member_id, kind, source, data, status, attempts, next_attempt_at,
                         to_email, subject, language, esp_message_id, last_error, created_at)
SELECT %(program)s, q.member_id, %(kind)s, q.source, q.data, 'queued', 0, %(now)s, '', '', '', '', '', %(now)s
FROM queue q
ON CONFLICT (program_id, member_id, kind, source) WHERE member_id IS NOT NULL DO NOTHING
RETURNING id
"""

# Who may get a kind, decided when the row is written: an address, an active member (a blocked
# member cannot spend or earn), and consent for a marketing kind.
_RECIPIENT = "m.program_id = %(program)s AND m.email <> '' AND m.status = 'active' {consent}"


def _recipient(kind: str) -> str:
    consent = "AND m.email_consent" if email_kinds.KINDS[kind].marketing else ""
    return _RECIPIENT.format(consent=consent)


@dataclass
class ScheduleResult:
    programs: int = 0
    chunks: int = 0
    queued: int = 0
    skipped_programs: list[str] = field(default_factory=list)


def _programs_sending(kind: str) -> list[tuple[Program, EmailSettings]]:
    """Active programs that send `kind`, with their settings (a program without a settings row
    has the defaults). 2 queries."""
    programs = list(Program.objects.filter(is_active=True).order_by("pk"))
    saved = {s.program_id: s for s in EmailSettings.objects.filter(program__in=programs)}
    found = []
    for program in programs:
        settings_row = saved.get(program.pk) or EmailSettings(program_id=program.pk)
        if settings_row.sends(kind):
            found.append((program, settings_row))
    return found


def _queue_chunks(
    *, program: Program, kind: str, sql: str, params: dict[str, Any], chunk_size: int, result: ScheduleResult
) -> int:
    """Run `sql` (a statement that defines `queue(member_id, source, data)` for members
    lo <= id < hi and ends with `_INSERT`) once per chunk, one transaction each; the new rows
    are sent after each commit. Returns how many rows were queued."""
    queued = 0
    for lo, hi in member_id_ranges(program_id=program.pk, chunk_size=chunk_size):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            cursor.execute(sql, {**params, "program": program.pk, "kind": kind, "lo": lo, "hi": hi})
            ids = [row[0] for row in cursor.fetchall()]
            emails.messages_queued(ids)
        queued += len(ids)
        result.chunks += 1
    result.queued += queued
    return queued


def _check_now(now: dt.datetime) -> None:
    if timezone.is_naive(now):
        raise ValueError("now must be timezone-aware")


# --------------------------------------------------------------------------------------------
# points_expiring

# Lots (available, with something left) of the chunk's members that expire after `now` and
# within the window, grouped per member and last valid day (`expires_at` is the local midnight
# after it). A warning lists every lot of the window; it is written when the member has a lot
# expiring from `warn_from` on (two days ahead: tomorrow's lots get the last chance instead)
# later than the newest day of their previous warnings (the partial index
# email_message_expiring reads that per member). The last chance: per day, for the lots whose
# last day is today or tomorrow.
_EXPIRY_SQL = f"""
WITH lots AS (
    SELECT e.member_id,
           ((e.expires_at AT TIME ZONE %(tz)s) - INTERVAL '1 microsecond')::date AS last_day,
           sum(e.remaining) AS points
    FROM {_ENTRIES} e
    JOIN {_MEMBERS} m ON m.id = e.member_id
    WHERE e.member_id >= %(lo)s AND e.member_id < %(hi)s AND e.program_id = %(program)s
      AND e.remaining > 0 AND e.released_at IS NOT NULL
      AND e.expires_at > %(now)s AND e.expires_at <= %(horizon)s
      AND {{recipient}}
    GROUP BY 1, 2
),
per_member AS (
    SELECT member_id,
           jsonb_agg(jsonb_build_object('points', points, 'expires_on', to_char(last_day, 'YYYY-MM-DD'))
                     ORDER BY last_day) AS lots,
           sum(points) AS points,
           min(last_day) AS first_day,
           max(last_day) FILTER (WHERE last_day >= %(warn_from)s) AS newest
    FROM lots GROUP BY member_id
),
queue AS (
    SELECT w.member_id, 'expiring:' || to_char(w.newest, 'YYYY-MM-DD') AS source,
           jsonb_build_object('lots', w.lots, 'points', w.points,
                              'expires_on', to_char(w.first_day, 'YYYY-MM-DD'), 'last_chance', false) AS data
    FROM per_member w
    WHERE w.newest IS NOT NULL
      AND w.newest > COALESCE((
          SELECT max(substr(x.source, 10)::date) FROM {_MESSAGES} x
          WHERE x.member_id = w.member_id AND x.kind = 'points_expiring' AND x.source LIKE 'expiring:%%'
      ), '-infinity'::date)
    UNION ALL
    SELECT l.member_id, 'last_chance:' || to_char(l.last_day, 'YYYY-MM-DD'),
           jsonb_build_object('lots', jsonb_build_array(jsonb_build_object(
                                  'points', l.points, 'expires_on', to_char(l.last_day, 'YYYY-MM-DD'))),
                              'points', l.points, 'expires_on', to_char(l.last_day, 'YYYY-MM-DD'),
                              'last_chance', true)
    FROM lots l
    WHERE l.last_day <= %(last_chance_through)s
)
{_INSERT}
"""


def expiry_warnings_send(*, now: dt.datetime | None = None, chunk_size: int = CHUNK_SIZE) -> ScheduleResult:
    """Queue points_expiring messages as of `now` for every program that sends them: a
    warning to each member with available points whose last valid day is within the
    program's `expiry_warning_days` (listing each day and amount), and a last chance the day
    before the points expire. Days are the program's local days. Idempotent: a second run
    (the same day or the next) queues only warnings for lots that came into the window since."""
    now = now or timezone.now()
    _check_now(now)
    kind = EmailKind.POINTS_EXPIRING.value
    result = ScheduleResult()
    for program, settings_row in _programs_sending(kind):
        today = program.local_date(now)
        days = settings_row.expiry_warning_days
        # The last chance needs tomorrow's lots even when the warning window is shorter.
        through = today + dt.timedelta(days=max(days, 1))
        params = {
            "now": now,
            "tz": program.timezone,
            "horizon": program.start_of_day(through + dt.timedelta(days=1)),
            "warn_from": today + dt.timedelta(days=2) if days >= 2 else through + dt.timedelta(days=1),
            "last_chance_through": today + dt.timedelta(days=1),
        }
        sql = _EXPIRY_SQL.format(recipient=_recipient(kind))
        _queue_chunks(program=program, kind=kind, sql=sql, params=params, chunk_size=chunk_size, result=result)
        result.programs += 1
    logger.info("expiry_warnings_send as of %s: %s", now.isoformat(), result)
    return result


# --------------------------------------------------------------------------------------------
# points_reminder

_REMINDER_SQL = f"""
WITH queue AS (
    SELECT m.id AS member_id, %(period)s AS source, %(data)s::jsonb AS data
    FROM {_MEMBERS} m
    WHERE m.id >= %(lo)s AND m.id < %(hi)s AND m.available > 0 AND {{recipient}}
)
{_INSERT}
"""
REMINDER_JOB = "points_reminder"


def reminder_period(frequency: str, day: dt.date) -> str:
    """The period a statement sent on local `day` belongs to: "2026-12" or "2026-Q4"."""
    if frequency == EmailSettings.ReminderFrequency.QUARTERLY:
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year}-{day.month:02d}"


def point_reminders_send(*, now: dt.datetime | None = None, chunk_size: int = CHUNK_SIZE) -> ScheduleResult:
    """Queue the periodic points statement (points_reminder) of the current period, in each
    program's time zone, for programs whose `reminder_frequency` is monthly or quarterly: to
    every active member with an address, consent and available points. The first run in a
    period sends it; the program and period are then recorded (`EmailScheduleRun`) and later
    runs in the period skip the program (a run cut short is completed by the next, without
    duplicates: one message per member and period)."""
    now = now or timezone.now()
    _check_now(now)
    kind = EmailKind.POINTS_REMINDER.value
    result = ScheduleResult()
    for program, settings_row in _programs_sending(kind):
        if settings_row.reminder_frequency == EmailSettings.ReminderFrequency.OFF:
            continue
        period = reminder_period(settings_row.reminder_frequency, program.local_date(now))
        if EmailScheduleRun.objects.filter(program=program, job=REMINDER_JOB, period=period).exists():
            result.skipped_programs.append(program.slug)
            continue
        params = {"now": now, "period": period, "data": json.dumps({"period": period})}
        sql = _REMINDER_SQL.format(recipient=_recipient(kind))
        queued = _queue_chunks(program=program, kind=kind, sql=sql, params=params, chunk_size=chunk_size, result=result)
        EmailScheduleRun.objects.get_or_create(
            program=program, job=REMINDER_JOB, period=period, defaults={"finished_at": timezone.now(), "queued": queued}
        )
        result.programs += 1
    logger.info("point_reminders_send as of %s: %s", now.isoformat(), result)
    return result


REWARDS_IN_REMINDER = 5


QUARTER_WORDS = {"en": "Q{q} {year}", "fr": "{q}{suffix} trimestre {year}"}


def period_label(period: Any, language: str) -> Any:
    """A statement's period as a member reads it, in `language`: "2026-12" -> "December 2026"
    ("décembre 2026"), "2026-Q4" -> "Q4 2026" ("4e trimestre 2026"). Anything else unchanged."""
    import re

    from django.utils import translation
    from django.utils.dateformat import format as date_format

    if not isinstance(period, str):
        return period
    if match := re.fullmatch(r"(\d{4})-(\d{2})", period):
        with translation.override(language):
            return date_format(dt.date(int(match[1]), int(match[2]), 1), "F Y")
    if match := re.fullmatch(r"(\d{4})-Q([1-4])", period):
        quarter = int(match[2])
        words = QUARTER_WORDS.get(language, QUARTER_WORDS["en"])
        return words.format(q=quarter, year=match[1], suffix="er" if quarter == 1 else "e")
    return period


@email_context.enricher(EmailKind.POINTS_REMINDER)
def _reminder_facts(facts: dict[str, Any], program: Program, member: Member | None) -> dict[str, Any]:
    """At send time: points expiring within the program's warning window, the next tier and
    what it still needs, and the rewards the member can take now (at most 5). 4-6 queries."""
    facts = {**facts, "period": period_label(facts.get("period"), emails.language_of(program, member))}
    if member is None:
        return facts
    from django.db.models import Sum

    from rewards.selectors import catalog, reward_refusal
    from tiers.selectors import member_tier_progress

    now = timezone.now()
    days = emails.program_settings(program.pk).expiry_warning_days
    horizon = program.start_of_day(program.local_date(now) + dt.timedelta(days=days + 1))
    facts["expiring_soon"] = (
        LedgerEntry.objects.filter(
            member_id=member.pk, remaining__gt=0, released_at__isnull=False, expires_at__gt=now, expires_at__lte=horizon
        ).aggregate(total=Sum("remaining"))["total"]
        or 0
    )
    progress = member_tier_progress(member=member, now=now)
    # The defaults say "N <points> more": only true of a program whose tiers count points.
    if progress.next_tier is not None and program.tier_metric == Program.TierMetric.POINTS_EARNED:
        facts["next_tier"] = {"name": progress.next_tier.name, "points_needed": progress.needed}
    else:
        facts["next_tier"] = {"name": "", "points_needed": 0}
    rewards = []
    for reward in catalog(program=program, now=now).filter(
        cost_points__isnull=False, cost_points__lte=member.available
    ):
        if reward_refusal(reward=reward, member=member, now=now) is None:
            rewards.append({"name": reward.name, "points": reward.cost_points, "description": reward.description})
        if len(rewards) >= REWARDS_IN_REMINDER:
            break
    facts["rewards"] = rewards
    return facts


# --------------------------------------------------------------------------------------------
# tier_at_risk

METRIC_WORDS = {
    "en": {"order": "order", "orders": "orders"},
    "fr": {"order": "commande", "orders": "commandes"},
}


def metric_amount(program: Program, value: Any, language: str) -> str:
    """An amount of the program's tier metric with its unit, as a member reads it: "120 beans",
    "40.00 EUR" ("40,00 EUR" in French), "2 orders"."""
    from decimal import Decimal

    amount = Decimal(str(value))
    if program.tier_metric == Program.TierMetric.AMOUNT_SPENT:
        text = f"{amount.quantize(Decimal('0.01'))}"
        return f"{text.replace('.', ',') if language == 'fr' else text} {program.currency}"
    count = int(amount)
    if program.tier_metric == Program.TierMetric.ORDER_COUNT:
        words = METRIC_WORDS.get(language, METRIC_WORDS["en"])
        return f"{count} {words['order'] if count == 1 else words['orders']}"
    return f"{count} {program.points_name}"


@email_context.enricher(EmailKind.TIER_AT_RISK)
def _at_risk_needed(facts: dict[str, Any], program: Program, member: Member | None) -> dict[str, Any]:
    """`needed` with the metric's unit, in the message's language (no query)."""
    needed = facts.get("needed")
    if isinstance(needed, int | float) or (isinstance(needed, str) and needed.replace(".", "", 1).isdigit()):
        facts = {**facts, "needed": metric_amount(program, needed, emails.language_of(program, member))}
    return facts


# The rows that make up a member's tier metric (tiers.selectors.METRIC_SQL, not summed), for
# the chunk's members, from `since` (NULL: all) to `now`.
_METRIC_ROWS = {
    Program.TierMetric.POINTS_EARNED: f"""
        SELECT e.member_id, e.occurred_at, e.points::numeric AS value
        FROM {_ENTRIES} e
        WHERE e.member_id >= %(lo)s AND e.member_id < %(hi)s AND e.program_id = %(program)s
          AND (e.kind = 'earn' OR (e.kind = 'reversal' AND e.points < 0))
          AND e.occurred_at <= %(now)s
          AND (%(since)s::timestamptz IS NULL OR e.occurred_at >= %(since)s::timestamptz)
    """,
    Program.TierMetric.AMOUNT_SPENT: """
        SELECT a.member_id, a.occurred_at,
               CASE WHEN a.type = 'refund' THEN -COALESCE(a.amount, 0) ELSE COALESCE(a.amount, 0) END AS value
        FROM loyalty_activity a
        WHERE a.member_id >= %(lo)s AND a.member_id < %(hi)s AND a.program_id = %(program)s
          AND a.type IN ('purchase', 'refund')
          AND a.occurred_at <= %(now)s
          AND (%(since)s::timestamptz IS NULL OR a.occurred_at >= %(since)s::timestamptz)
    """,
    Program.TierMetric.ORDER_COUNT: """
        SELECT a.member_id, a.occurred_at, 1::numeric AS value
        FROM loyalty_activity a
        WHERE a.member_id >= %(lo)s AND a.member_id < %(hi)s AND a.program_id = %(program)s
          AND a.type = 'purchase'
          AND a.occurred_at <= %(now)s
          AND (%(since)s::timestamptz IS NULL OR a.occurred_at >= %(since)s::timestamptz)
    """,
}

# When would the nightly evaluation move each member of the chunk down, if they did nothing
# more? Their metric drops below their tier's threshold at `drop_at`:
# - rolling window of W days: the metric at T counts rows since T - W; with the rows summed
#   newest first, x is the newest row at which that sum still reaches the threshold, and the
#   metric falls below it once x leaves the window, at x + W;
# - calendar year: at the next local 1 January (the metric starts again from 0);
# - lifetime: never (the metric does not fall without refunds);
# - now, when the metric is already below (the member is kept by retention or a manual tier).
# The downgrade happens at the first evaluation (02:30 UTC) after the latest of `drop_at`,
# the end of retention and the end of a manual tier; the member is at risk when that is within
# `tier_at_risk_days`. `needed` is what the metric would lack then; `lower_tier` the tier the
# evaluation would give.
_TIER_AT_RISK_SQL = """
WITH tiers AS (
    SELECT id, name, position, threshold FROM tiers_tier WHERE program_id = %(program)s AND is_active
),
cur AS (
    SELECT mt.member_id, t.id AS tier_id, t.name, t.position, t.threshold, t.benefits, t.multiplier,
           mt.retain_until, mt.manual_until
    FROM tiers_membertier mt
    JOIN tiers_tier t ON t.id = mt.tier_id
    JOIN {members} m ON m.id = mt.member_id
    WHERE mt.member_id >= %(lo)s AND mt.member_id < %(hi)s AND t.threshold > 0
      AND (mt.retain_until IS NULL OR mt.retain_until < %(horizon)s)
      AND (mt.manual_until IS NULL OR mt.manual_until < %(horizon)s)
      AND {recipient}
),
rows AS (
    SELECT r.member_id, r.occurred_at, r.value,
           sum(r.value) OVER (PARTITION BY r.member_id ORDER BY r.occurred_at DESC) AS newer_sum
    FROM ({metric_rows}) r
    WHERE r.member_id IN (SELECT member_id FROM cur)
),
agg AS (
    SELECT c.*, COALESCE(sum(r.value), 0) AS metric_now,
           max(r.occurred_at) FILTER (WHERE r.newer_sum >= c.threshold) AS newest_reaching
    FROM cur c LEFT JOIN rows r ON r.member_id = c.member_id
    GROUP BY c.member_id, c.tier_id, c.name, c.position, c.threshold, c.benefits, c.multiplier,
             c.retain_until, c.manual_until
),
dropping AS (
    SELECT a.*, CASE
        WHEN a.metric_now < a.threshold THEN %(now)s
        WHEN %(window)s = 'rolling' THEN a.newest_reaching + %(window_days)s * INTERVAL '1 day'
        WHEN %(window)s = 'calendar_year' THEN %(next_year)s
    END AS drop_at
    FROM agg a
),
moment AS (
    SELECT d.*, GREATEST(d.drop_at, d.retain_until, d.manual_until, %(now)s) AS from_at
    FROM dropping d WHERE d.drop_at IS NOT NULL
),
evaluation AS (
    SELECT mo.*,
           ((date_trunc('day', (mo.from_at AT TIME ZONE 'UTC') - %(eval_offset)s) + INTERVAL '1 day' + %(eval_offset)s)
            AT TIME ZONE 'UTC') AS eval_at
    FROM moment mo
),
risk AS (
    SELECT ev.*, CASE
        WHEN %(window)s = 'rolling' THEN ev.eval_at - %(window_days)s * INTERVAL '1 day'
        WHEN %(window)s = 'calendar_year'
            THEN date_trunc('year', ev.eval_at AT TIME ZONE %(tz)s) AT TIME ZONE %(tz)s
    END AS eval_since
    FROM evaluation ev WHERE ev.eval_at <= %(horizon)s
),
at_eval AS (
    SELECT k.member_id, k.tier_id, k.name, k.benefits, k.multiplier, k.threshold, k.position, k.eval_at,
           COALESCE(sum(r.value) FILTER (WHERE k.eval_since IS NULL OR r.occurred_at >= k.eval_since), 0) AS metric
    FROM risk k LEFT JOIN rows r ON r.member_id = k.member_id
    GROUP BY k.member_id, k.tier_id, k.name, k.benefits, k.multiplier, k.threshold, k.position, k.eval_at
),
queue AS (
    SELECT x.member_id,
           'tier_at_risk:' || x.tier_id || ':' || to_char(x.eval_at AT TIME ZONE %(tz)s, 'YYYY-MM-DD') AS source,
           jsonb_build_object(
               'tier', jsonb_build_object('name', x.name, 'benefits', x.benefits, 'multiplier', x.multiplier),
               'evaluation_on', to_char(x.eval_at AT TIME ZONE %(tz)s, 'YYYY-MM-DD'),
               'needed', x.threshold - x.metric,
               'lower_tier', jsonb_build_object('name', COALESCE(lower.name, ''))
           ) AS data
    FROM at_eval x
    LEFT JOIN LATERAL (
        SELECT t.name FROM tiers t WHERE t.threshold <= x.metric AND t.position < x.position
        ORDER BY t.position DESC LIMIT 1
    ) lower ON TRUE
    WHERE x.metric < x.threshold
)
{insert}
"""


def tier_at_risk_send(*, now: dt.datetime | None = None, chunk_size: int = CHUNK_SIZE) -> ScheduleResult:
    """Queue tier_at_risk messages as of `now`: to each member (with consent) whose tier the
    nightly evaluation would lower within the program's `tier_at_risk_days`, should they do
    nothing more: their tier, the evaluation's local date, what the metric would lack and the
    tier they would get. Set-based per chunk (the metric's rows of the chunk, one statement).
    Idempotent: one message per member, tier and evaluation date."""
    from tiers.models import Tier

    now = now or timezone.now()
    _check_now(now)
    kind = EmailKind.TIER_AT_RISK.value
    result = ScheduleResult()
    with_tiers = set(Tier.objects.filter(is_active=True).values_list("program_id", flat=True))
    offset = dt.timedelta(hours=TIER_EVALUATION_TIME_UTC.hour, minutes=TIER_EVALUATION_TIME_UTC.minute)
    for program, settings_row in _programs_sending(kind):
        if program.pk not in with_tiers:
            continue
        window = program.tier_window
        window_days = program.tier_window_days or ROLLING_DEFAULT_DAYS
        today = program.local_date(now)
        if window == Program.TierWindow.ROLLING:
            since: dt.datetime | None = now - dt.timedelta(days=window_days)
        elif window == Program.TierWindow.CALENDAR_YEAR:
            since = program.start_of_day(dt.date(today.year, 1, 1))
        else:
            since = None
        params = {
            "now": now,
            "tz": program.timezone,
            "since": since,
            "window": window,
            "window_days": window_days,
            "next_year": program.start_of_day(dt.date(today.year + 1, 1, 1)),
            "horizon": now + dt.timedelta(days=settings_row.tier_at_risk_days),
            "eval_offset": offset,
        }
        sql = _TIER_AT_RISK_SQL.format(
            members=_MEMBERS,
            recipient=_recipient(kind),
            metric_rows=_METRIC_ROWS[program.tier_metric],
            insert=_INSERT,
        )
        _queue_chunks(program=program, kind=kind, sql=sql, params=params, chunk_size=chunk_size, result=result)
        result.programs += 1
    logger.info("tier_at_risk_send as of %s: %s", now.isoformat(), result)
    return result
