"""Automations: event or schedule -> conditions -> actions (docs/automations.md).

An `Automation` of a program has a trigger (an activity type, the member's tier changed, the
member enrolled, or the daily job), conditions that must all hold, and actions (award points,
set a tier, send an email, issue a reward). It fires at most once per member per period.

One implementation serves both paths:
- `automations_run` (the daily job, `run_workflows`): for each active daily automation, the
  members of a chunk of member ids who meet the conditions are *selected and claimed in one
  SQL statement* (`_claim`): the statement inserts their `AutomationRun` rows with
  `ON CONFLICT DO NOTHING RETURNING member_id`. The unique constraint `automation_run_once`
  (automation, member, period key) is the "at most once per member per period" guarantee, also
  for concurrent or repeated runs: a member whose row exists already is not returned, so their
  actions are not performed twice. The actions of the claimed members run in the same
  transaction (one per chunk), so a crash loses the whole chunk and a rerun does it again.
- `automations_on_event` (after an activity, a tier change, an enrolment commits): the same
  statement restricted to one member id.

The email action is a message of the notifications outbox (kind `custom`, docs/emails.md):
`automation_email_in_transaction` lets the notifications app render the automation's subject
and body in its sandbox and write the message row in the chunk's transaction, so a rolled-back
chunk sends nothing and a sent message is retried until delivered. Marketing (consent needed)
unless the automation is marked transactional.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.template import Node, Template, TemplateSyntaxError
from django.template.base import FilterExpression, VariableNode
from django.template.defaulttags import ForNode, IfNode, WithNode
from django.utils import timezone

from loyalty import errors
from loyalty import services as ledger
from loyalty.chunks import member_id_ranges
from loyalty.models import Member, Program
from loyalty.presence import PresenceCache
from rewards import services as reward_services
from rewards.models import Reward
from tiers import services as tier_services
from tiers.models import MemberTier, Tier

from . import budgets, signals
from .models import Automation, AutomationRun, BudgetScope

logger = logging.getLogger(__name__)

Trigger = Automation.Trigger
Period = Automation.Period
EVENT_TRIGGERS = frozenset({Trigger.ACTIVITY, Trigger.TIER_CHANGED, Trigger.ENROLLED})
DEFAULT_CHUNK_SIZE = 5_000
# `set_tier` without `set_tier_days`: the tier is set for a year. A manual tier freezes the
# member's tier (no upgrades, no downgrades) until it ends, so "for ever" is never the default.
DEFAULT_SET_TIER_DAYS = 365
RUN = AutomationRun._meta.db_table


@dataclass
class AutomationsResult:
    """What a run did: automations looked at, firings (runs), points awarded, emails queued,
    tiers set, member chunks (transactions)."""

    automations: int = 0
    runs: int = 0
    points: int = 0
    emails: int = 0
    tiers: int = 0
    chunks: int = 0
    by_automation: dict[int, int] = field(default_factory=dict)

    def add(self, other: AutomationsResult) -> None:
        self.runs += other.runs
        self.points += other.points
        self.emails += other.emails
        self.tiers += other.tiers
        for automation_id, runs in other.by_automation.items():
            self.by_automation[automation_id] = self.by_automation.get(automation_id, 0) + runs


# --------------------------------------------------------------------------------------------
# Periods


def period_key(*, automation: Automation, program: Program, now: dt.datetime) -> str:
    """The period `now` falls in, in the program's time zone: "once", "2026", "2026-11",
    "2026-W48" (ISO week, ISO year) or "2026-11-23". One `AutomationRun` per member per key."""
    if automation.period == Period.ONCE:
        return "once"
    day = program.local_date(now)
    if automation.period == Period.YEAR:
        return f"{day.year:04d}"
    if automation.period == Period.MONTH:
        return f"{day.year:04d}-{day.month:02d}"
    if automation.period == Period.WEEK:
        iso = day.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    if automation.period == Period.DAY:
        return day.isoformat()
    raise errors.InvalidInput(f"Unknown period {automation.period!r}.", field="period")


def anniversary_days(*, today: dt.date) -> list[int]:
    """The enrolment days (month * 100 + day) whose anniversary is `today`: today's own day,
    and on 28 February of a non-leap year also 29 February (members who enrolled on a leap day
    celebrate on the 28th)."""
    days = [today.month * 100 + today.day]
    if today.month == 2 and today.day == 28:
        try:
            dt.date(today.year, 2, 29)
        except ValueError:
            days.append(229)
    return days


# --------------------------------------------------------------------------------------------
# Conditions: one SQL statement selects and claims the members


def _conditions_sql(automation: Automation, tier_ids: Sequence[int]) -> list[str]:
    """The WHERE clauses of the automation's conditions over `loyalty_member m`, all AND-ed.
    Each condition is a correlated subquery on one member, served by a member-leading index
    (activity_member_recent, entry_member_recent, the MemberTier primary key), so the cost
    is a few index probes per member of the chunk; unset conditions add nothing."""
    window_a = "AND a.occurred_at >= %(since)s" if automation.window_days is not None else ""
    window_e = "AND e.occurred_at >= %(since)s" if automation.window_days is not None else ""
    clauses: list[str] = []
    if automation.min_orders is not None:
        clauses.append(
            "(SELECT count(*) FROM loyalty_activity a WHERE a.member_id = m.id AND a.type = 'purchase' "
            f"AND a.occurred_at <= %(now)s {window_a}) >= %(min_orders)s"
        )
    if automation.min_amount_spent is not None:
        # Purchases only: refunds are not subtracted (the condition is about buying behaviour).
        clauses.append(
            "(SELECT COALESCE(sum(a.amount), 0) FROM loyalty_activity a WHERE a.member_id = m.id "
            f"AND a.type = 'purchase' AND a.occurred_at <= %(now)s {window_a}) >= %(min_amount_spent)s"
        )
    if automation.min_points_earned is not None:
        clauses.append(
            "(SELECT COALESCE(sum(e.points), 0) FROM loyalty_ledgerentry e WHERE e.member_id = m.id "
            f"AND e.kind = 'earn' AND e.occurred_at <= %(now)s {window_e}) >= %(min_points_earned)s"
        )
    if automation.min_days_inactive is not None:
        clauses.append(
            "COALESCE((SELECT max(a.occurred_at) FROM loyalty_activity a WHERE a.member_id = m.id "
            "AND a.occurred_at <= %(now)s), m.enrolled_at) <= %(inactive_since)s"
        )
    if tier_ids:
        clauses.append(
            "EXISTS (SELECT 1 FROM tiers_membertier mt WHERE mt.member_id = m.id AND mt.tier_id = ANY(%(tier_ids)s))"
        )
    if automation.min_days_enrolled is not None:
        clauses.append("m.enrolled_at <= %(enrolled_before)s")
    if automation.on_enrollment_anniversary:
        clauses.append(
            "(EXTRACT(MONTH FROM m.enrolled_at AT TIME ZONE %(tz)s) * 100 "
            "+ EXTRACT(DAY FROM m.enrolled_at AT TIME ZONE %(tz)s))::int = ANY(%(anniversary_days)s) "
            "AND EXTRACT(YEAR FROM m.enrolled_at AT TIME ZONE %(tz)s) < %(year)s"
        )
    return clauses


def audience_where(automation: Automation, tier_ids: Sequence[int]) -> str:
    """The WHERE clause over `loyalty_member m` of the members `automation` acts on in period
    `%(period_key)s` as of `%(now)s` (`audience_params`): active, enrolled, not served yet in
    the period, meeting every condition. The one definition shared by the run's claim and by
    the preview before switching on (`workflows.activation`), so the two cannot drift."""
    return " AND ".join(
        [
            "m.program_id = %(program)s",
            "m.status = 'active'",
            "m.enrolled_at <= %(now)s",
            # A per-member probe of the unique index, written so the planner cannot turn it into
            # an anti-join: during a run the table grows faster than its statistics, and a
            # join planned for "few runs" then compares every member with every run.
            f"(SELECT 1 FROM {RUN} r WHERE r.automation_id = %(automation)s "
            "AND r.member_id = m.id AND r.period_key = %(period_key)s LIMIT 1) IS NULL",
            *_conditions_sql(automation, tier_ids),
        ]
    )


def _claim_sql(automation: Automation, tier_ids: Sequence[int]) -> str:
    """Select the members of [lo, hi) meeting the conditions, lock them in id order (so a
    member blocked meanwhile is re-checked and no posting races the actions) and insert their
    runs. `ON CONFLICT DO NOTHING` makes the unique constraint the arbiter between concurrent
    runs; RETURNING gives exactly the members this transaction fired for."""
    where = f"m.id >= %(lo)s AND m.id < %(hi)s AND {audience_where(automation, tier_ids)}"
    return (
        f"WITH chosen AS (SELECT m.id FROM loyalty_member m WHERE {where} ORDER BY m.id FOR NO KEY UPDATE OF m) "
        f"INSERT INTO {RUN} (automation_id, member_id, period_key, fired_at, points, details) "
        "SELECT %(automation)s, chosen.id, %(period_key)s, %(now)s, 0, '{}'::jsonb FROM chosen "
        "ON CONFLICT ON CONSTRAINT automation_run_once DO NOTHING "
        "RETURNING id, member_id"
    )


def audience_params(
    *, automation: Automation, program: Program, key: str, now: dt.datetime, tier_ids: Sequence[int]
) -> dict[str, Any]:
    """The parameters of `audience_where`. An unsaved automation (no id) has no runs."""
    today = program.local_date(now)
    days = dt.timedelta
    return {
        "program": program.pk,
        "automation": automation.pk,
        "period_key": key,
        "now": now,
        "since": now - days(days=automation.window_days) if automation.window_days is not None else None,
        "min_orders": automation.min_orders,
        "min_amount_spent": automation.min_amount_spent,
        "min_points_earned": automation.min_points_earned,
        "inactive_since": (
            now - days(days=automation.min_days_inactive) if automation.min_days_inactive is not None else None
        ),
        "tier_ids": list(tier_ids),
        "enrolled_before": (
            now - days(days=automation.min_days_enrolled) if automation.min_days_enrolled is not None else None
        ),
        "tz": program.timezone,
        "anniversary_days": anniversary_days(today=today),
        "year": today.year,
    }


def _claim(
    *, automation: Automation, program: Program, key: str, now: dt.datetime, lo: int, hi: int
) -> list[tuple[int, int]]:
    """Claim the firings of `automation` for the members of [lo, hi) that meet its conditions
    and have no run in period `key`: (run id, member id) pairs, in member id order. Runs
    inside the caller's transaction. 1 query."""
    tier_ids = [t.pk for t in automation.tiers.all()]  # prefetched by the callers
    with connection.cursor() as cursor:
        cursor.execute(
            _claim_sql(automation, tier_ids),
            {
                **audience_params(automation=automation, program=program, key=key, now=now, tier_ids=tier_ids),
                "lo": lo,
                "hi": hi,
            },
        )
        return sorted(((r[0], r[1]) for r in cursor.fetchall()), key=lambda r: r[1])


# --------------------------------------------------------------------------------------------
# Actions


def reward_issue_hook(*, automation: Automation, member_id: int, key: str, now: dt.datetime) -> dict[str, Any]:
    """Issue the automation's reward (`reward_id`) to a member as a gift coupon (no points
    spent) through `rewards.services.reward_issue_for_automation`, inside the chunk's
    transaction, with an idempotency key per firing; returns the JSON-able details it reports
    (the code, or why it was refused: a refusal never undoes the firing's other actions)."""
    return reward_services.reward_issue_for_automation(
        program_id=automation.program_id,
        member_id=member_id,
        reward_id=automation.reward_id,
        reason=automation.name,
        idempotency_key=f"automation:{automation.pk}:{member_id}:{key}:reward",
        now=now,
    )


# --------------------------------------------------------------------------------------------
# Email templates: the variables each action offers, checked when the automation is saved

# What an email may use, by variable: its fields (an empty tuple: a plain value). The context is
# built from plain dicts of exactly these fields (`_email_context`), never from model instances,
# so a template cannot reach other rows or methods.
MEMBER_FIELDS = ("first_name", "last_name", "email", "external_id", "referral_code")
PROGRAM_FIELDS = ("name", "points_name", "currency")
AUTOMATION_FIELDS = ("name",)
TIER_FIELDS = ("name", "benefits")
COUPON_FIELDS = ("code", "reward", "value", "valid_until")
# Tags an email may use; others ({% include %}, {% load %}, {% url %}...) reach beyond the email.
EMAIL_TAGS = frozenset(
    {"if", "elif", "else", "endif", "for", "empty", "endfor", "with", "endwith", "comment", "firstof", "now",
     "spaceless", "autoescape", "filter", "templatetag", "verbatim", "cycle"}
)  # fmt: skip


def email_variables(*, award_points: bool, set_tier: bool, reward: bool) -> dict[str, tuple[str, ...]]:
    """The variables an automation's email may use, given which actions it has: `member`,
    `program` and `automation` always; `points` with "award points", `tier` with "set tier",
    `coupon` with "issue a reward" (docs/automations.md)."""
    variables: dict[str, tuple[str, ...]] = {
        "member": MEMBER_FIELDS,
        "program": PROGRAM_FIELDS,
        "automation": AUTOMATION_FIELDS,
    }
    if award_points:
        variables["points"] = ()
    if set_tier:
        variables["tier"] = TIER_FIELDS
    if reward:
        variables["coupon"] = COUPON_FIELDS
    return variables


def template_expressions(node: Node) -> Iterator[FilterExpression]:
    """The filter expressions a node evaluates (its variables and its filters' arguments); the
    save-time checks of automation and member email templates (notifications.email_render) read them."""

    def walk(value: Any) -> Iterator[FilterExpression]:
        if isinstance(value, FilterExpression):
            yield value
        elif isinstance(value, list | tuple):
            for item in value:
                yield from walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                yield from walk(item)
        elif hasattr(value, "first") or hasattr(value, "value"):  # an {% if %} condition
            for part in ("first", "second", "value"):
                yield from walk(getattr(value, part, None))

    if isinstance(node, IfNode):
        for condition, _ in node.conditions_nodelists:
            yield from walk(condition)
        return
    for name, value in vars(node).items():
        if name not in ("nodelist", "token", "origin") and not name.startswith("nodelist"):
            yield from walk(value)


def email_template_problems(source: str, variables: dict[str, tuple[str, ...]]) -> list[str]:
    """What is wrong with an email template for these variables, in words (empty: nothing):
    a syntax error, a tag emails cannot use, or a variable or field that is not offered (an
    unknown name would otherwise render blank). Names bound by {% for %} and {% with %} are
    accepted. No query."""
    try:
        template = Template(source)
    except TemplateSyntaxError as exc:
        return [f"Template error: {exc}"]
    problems: list[str] = []
    local: set[str] = {"forloop"}
    nodes = template.nodelist.get_nodes_by_type(Node)
    for node in nodes:
        if isinstance(node, ForNode):
            local.update(node.loopvars)
        elif isinstance(node, WithNode):
            local.update(node.extra_context)
    unknown: list[str] = []
    for node in nodes:
        token = getattr(node, "token", None)
        if token is not None and token.token_type.name == "BLOCK":
            tag = token.contents.split()[0]
            if tag not in EMAIL_TAGS:
                problems.append(f"The {{% {tag} %}} tag cannot be used in an email.")
                continue
        for expression in template_expressions(node):
            references = [expression.var] + [arg for _, args in expression.filters for is_var, arg in args if is_var]
            for reference in references:
                lookups = getattr(reference, "lookups", None)
                if not lookups or lookups[0] in local:
                    continue
                fields = variables.get(lookups[0])
                if fields is None or len(lookups) > 2 or (len(lookups) == 2 and lookups[1] not in fields):
                    unknown.append(".".join(lookups))
                elif fields and len(lookups) == 1 and isinstance(node, VariableNode) and reference is expression.var:
                    problems.append(
                        f"{{{{ {lookups[0]} }}}} prints nothing useful: name a field, e.g. {lookups[0]}.{fields[0]}."
                    )
    if unknown:
        offered = ", ".join(
            f"{name}.{field}" if field else name for name, fields in variables.items() for field in (fields or ("",))
        )
        names = ", ".join(dict.fromkeys(unknown))
        problems.append(f"Unknown variable(s): {names}. This automation's email can use: {offered}.")
    return problems


def email_member_fields(member: Member) -> dict[str, Any]:
    """The `member` variable of an automation's email (`MEMBER_FIELDS`), as plain data."""
    return {
        "first_name": member.first_name,
        "last_name": member.last_name,
        "email": member.email,
        "external_id": member.external_id or "",
        "referral_code": member.referral_code,
    }


def _email_facts(*, automation: Automation, points: int, coupon: dict[str, Any] | None) -> dict[str, Any]:
    """The firing's own variables (`email_variables` lists them; `member` and `program` are
    added by whoever renders the email), as plain data."""
    facts: dict[str, Any] = {"automation": {"name": automation.name}, "points": points}
    if automation.set_tier is not None:
        facts["tier"] = {"name": automation.set_tier.name, "benefits": automation.set_tier.benefits}
    if coupon is not None:
        facts["coupon"] = coupon
    return facts


def _coupon_context(*, reward_name: str, program: Program, issued: dict[str, Any]) -> dict[str, Any] | None:
    """The coupon the reward action just issued, as the email sees it (None: refused)."""
    if issued.get("status") != "issued":
        return None
    value = issued.get("value")
    expires_at = issued.get("expires_at")
    return {
        "code": issued["code"],
        "reward": reward_name,
        "value": None if value is None else Decimal(value).quantize(Decimal("0.01")),
        # Valid through the local day before `expires_at` (rewards.services._coupon_expiry).
        "valid_until": (
            None
            if expires_at is None
            else program.local_date(dt.datetime.fromisoformat(expires_at)) - dt.timedelta(days=1)
        ),
    }


def _perform(
    *,
    automation: Automation,
    program: Program,
    claimed: list[tuple[int, int]],
    key: str,
    now: dt.datetime,
    gate: budgets.BudgetGate | None = None,
) -> AutomationsResult:
    """The actions of `automation` for the members just claimed, in the caller's transaction:
    points through the ledger (one lot each, idempotency key per firing), the tier through
    `tier_set_manual`, the reward hook, and the email (a message of the notifications outbox,
    through `automation_email_in_transaction`). Records what was done on each run. `gate`: the
    automation's and the program's budgets, locked by the caller (workflows.budgets): points
    are cut to what is left, and the cut is recorded on the run.
    Queries: 2 + per member (1 posting, ~4 tier, 1 email) + 1 update."""
    result = AutomationsResult(runs=len(claimed), by_automation={automation.pk: len(claimed)})
    if not claimed:
        return result
    member_ids = [m for _, m in claimed]
    members = {m.pk: m for m in Member.objects.filter(pk__in=member_ids)}
    tier_states: dict[int, MemberTier] = {}
    if automation.set_tier_id is not None:
        tier_states = {
            s.member_id: s for s in MemberTier.objects.select_related("tier").filter(member_id__in=member_ids)
        }
    wants_email = bool(automation.email_subject.strip() and automation.email_body.strip())
    needs_coupon = wants_email and "coupon" in automation.email_subject + automation.email_body
    reward_name = ""
    if automation.reward_id is not None and needs_coupon:
        reward_name = Reward.objects.filter(pk=automation.reward_id).values_list("name", flat=True).first() or ""
    updates: list[tuple[int, int, str]] = []
    for run_id, member_id in claimed:
        member = members[member_id]
        member.program = program
        details: dict[str, Any] = {"trigger": automation.trigger}
        points = 0
        if automation.award_points:
            points = automation.award_points
            if gate is not None:
                points = gate.take_for(
                    (BudgetScope.AUTOMATION, automation.pk), points, automation_id=automation.pk, member_id=member_id
                )
            entry_ids: list[int] = []
            if points > 0:
                posted = ledger.points_earn(
                    program=program,
                    member_id=member_id,
                    points=points,
                    reason=automation.name[:255],
                    reference=f"automation:{automation.pk}",
                    idempotency_key=f"automation:{automation.pk}:{member_id}:{key}",
                    now=now,
                )
                entry_ids = [e.id for e in posted.entries]
            details["points"] = {"points": points, "entries": entry_ids}
            if gate is not None and points < automation.award_points:
                details["points"]["budget"] = gate.notes[-1].reason
            result.points += points
        if automation.set_tier_id is not None:
            details["tier"] = _set_tier(automation=automation, member=member, state=tier_states.get(member_id), now=now)
            result.tiers += details["tier"]["status"] == "set"
        coupon = None
        if automation.reward_id is not None:
            details["reward"] = reward_issue_hook(automation=automation, member_id=member_id, key=key, now=now)
            coupon = _coupon_context(reward_name=reward_name, program=program, issued=details["reward"])
        if wants_email:
            if not member.email:
                details["email"] = "skipped: no email address"
            elif not automation.email_transactional and not member.email_consent:
                details["email"] = "skipped: no email consent"
            elif needs_coupon and coupon is None:
                details["email"] = "skipped: the email shows a coupon and the reward was refused"
            else:
                answers = signals.automation_email_in_transaction.send(
                    sender=Automation,
                    program=program,
                    automation=automation,
                    member=member,
                    period_key=key,
                    facts=_email_facts(automation=automation, points=points, coupon=coupon),
                )
                if any(queued for _receiver, queued in answers):
                    details["email"] = "queued in the outbox"
                    result.emails += 1
                else:
                    details["email"] = "not queued: the program does not send automation emails"
        updates.append((run_id, points, json.dumps(details)))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {RUN} r SET points = u.points, details = u.details::jsonb "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS u(id, points, details) WHERE r.id = u.id",
            [[u[0] for u in updates], [u[1] for u in updates], [u[2] for u in updates]],
        )
    budgets.gate_spend(gate=gate, program=program, member_id=None, now=now)
    return result


def _set_tier(*, automation: Automation, member: Member, state: MemberTier | None, now: dt.datetime) -> dict[str, Any]:
    """Set the automation's tier for `set_tier_days` (default a year). Never lowers a member:
    one in a higher tier keeps it; one whose manual tier already runs at least as long keeps it."""
    tier: Tier = automation.set_tier  # type: ignore[assignment]
    until = now + dt.timedelta(days=automation.set_tier_days or DEFAULT_SET_TIER_DAYS)
    current = state.tier if state is not None else None
    if current is not None and current.position > tier.position:
        return {"status": "kept", "tier": current.name, "note": "the member is in a higher tier"}
    if current == tier and state is not None and state.manual_until is not None and state.manual_until >= until:
        return {"status": "kept", "tier": current.name, "until": state.manual_until.isoformat()}
    tier_services.tier_set_manual(
        member=member, tier=tier, until=until, reason=f"Automation: {automation.name}", now=now
    )
    return {"status": "set", "tier": tier.name, "until": until.isoformat()}


# --------------------------------------------------------------------------------------------
# The daily job and the event path


def _member_ranges(*, program: Program, chunk_size: int) -> Iterator[tuple[int, int]]:
    """[lo, hi) member-id ranges of `chunk_size` members of `program`, computed lazily."""
    return member_id_ranges(program_id=program.pk, chunk_size=chunk_size)


def automations_run(
    *, now: dt.datetime, program: Program | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> AutomationsResult:
    """The daily automations of every active program (or of `program`) as of `now`.

    Per program, members are taken in chunks of `chunk_size` ids; each chunk is one durable
    transaction that claims and performs every daily automation of the program for its
    members. A crash loses only the chunk it happened in, and a rerun (same `now`) does only
    what is missing: running twice changes nothing the second time.
    Queries per chunk: 1 range + per automation 1 claim + the actions of its firings."""
    if timezone.is_naive(now):
        raise errors.InvalidInput("now must be timezone-aware.", field="now")
    if chunk_size < 1:
        raise errors.InvalidInput("chunk_size must be positive.", field="chunk_size")
    automations = (
        Automation.objects.filter(is_active=True, trigger=Trigger.DAILY, program__is_active=True)
        .select_related("program", "set_tier")
        .prefetch_related("tiers")
        .order_by("program_id", "pk")
    )
    if program is not None:
        automations = automations.filter(program=program)
    by_program: dict[int, list[Automation]] = defaultdict(list)
    for automation in automations:
        by_program[automation.program_id].append(automation)
    result = AutomationsResult()
    for group in by_program.values():
        the_program = group[0].program
        keys = {a.pk: period_key(automation=a, program=the_program, now=now) for a in group}
        result.automations += len(group)
        for lo, hi in _member_ranges(program=the_program, chunk_size=chunk_size):
            with transaction.atomic(durable=True):
                # The budgets of the chunk's point awards, locked before its members (workflows.budgets).
                gate = budgets.gate_lock(
                    program=the_program,
                    owners=budgets.automation_owners(program=the_program, automations=group),
                    now=now,
                )
                for automation in group:
                    claimed = _claim(
                        automation=automation, program=the_program, key=keys[automation.pk], now=now, lo=lo, hi=hi
                    )
                    result.add(
                        _perform(
                            automation=automation,
                            program=the_program,
                            claimed=claimed,
                            key=keys[automation.pk],
                            now=now,
                            gate=gate,
                        )
                    )
            result.chunks += 1
    return result


# "Has program P an active automation for this event?", remembered a few seconds per process
# (a nightly tier run sends one tier_changed per member); forgotten when an automation changes.
_event_automations = PresenceCache(ttl=5.0)


def event_automations_forget() -> None:
    _event_automations.clear()


def _program_has_event_automations(*, program_id: int, trigger: str, activity_type: str) -> bool:
    key = (program_id, trigger, activity_type if trigger == Trigger.ACTIVITY else "")

    def compute() -> bool:
        found = Automation.objects.filter(program_id=program_id, is_active=True, trigger=trigger)
        if trigger == Trigger.ACTIVITY:
            found = found.filter(activity_type=activity_type)
        return found.exists()

    return _event_automations.get(key, compute)


def automations_on_event(
    *,
    trigger: str,
    member_id: int,
    activity_type: str = "",
    now: dt.datetime | None = None,
    program_id: int | None = None,
) -> AutomationsResult:
    """An event happened to a member (called after its transaction committed): run the active
    automations of the member's program with this trigger (for "activity": whose activity type
    matches) for that member only, through the same claim and actions as the daily job.
    Cheap when nothing is configured: with `program_id`, no query at all most of the time (the
    answer "no automation for this event" is remembered for 5 s per process); without it, 1
    query finds no automation and returns."""
    if trigger not in EVENT_TRIGGERS:
        raise errors.InvalidInput(f"{trigger!r} is not an event trigger.", field="trigger")
    now = now or timezone.now()
    if program_id is not None and not _program_has_event_automations(
        program_id=program_id, trigger=trigger, activity_type=activity_type
    ):
        return AutomationsResult()
    automations = Automation.objects.filter(
        is_active=True,
        trigger=trigger,
        program__is_active=True,
        program_id__in=Member.objects.filter(pk=member_id).values("program_id"),
    )
    if trigger == Trigger.ACTIVITY:
        automations = automations.filter(activity_type=activity_type)
    result = AutomationsResult()
    found = list(automations.select_related("program", "set_tier").prefetch_related("tiers").order_by("pk"))
    for automation in found:
        program = automation.program
        key = period_key(automation=automation, program=program, now=now)
        result.automations += 1
        with transaction.atomic():
            gate = budgets.gate_lock(
                program=program, owners=budgets.automation_owners(program=program, automations=[automation]), now=now
            )
            claimed = _claim(automation=automation, program=program, key=key, now=now, lo=member_id, hi=member_id + 1)
            result.add(_perform(automation=automation, program=program, claimed=claimed, key=key, now=now, gate=gate))
    return result


# --------------------------------------------------------------------------------------------
# Ready-made automations and the demo

WIN_BACK_POINTS = 200
ANNIVERSARY_POINTS = 100


def _vip_tier(program: Program) -> Tier | None:
    """The tier "VIP by purchase history" sets: the second-highest active tier (the top one
    stays reserved for members who earn it), or the only one."""
    tiers = list(Tier.objects.filter(program=program, is_active=True).order_by("-position")[:2])
    return tiers[-1] if tiers else None


def _ready_made_defaults(program: Program) -> dict[str, dict[str, Any]]:
    vip = _vip_tier(program)
    return {
        Automation.ReadyMade.VIP: {
            "name": "VIP by purchase history",
            "trigger": Trigger.DAILY,
            "period": Period.YEAR,
            "window_days": 365,
            "min_orders": 5,
            "set_tier": vip,
            "set_tier_days": 365,
            "email_subject": "Welcome to {{ tier.name }}, {{ member.first_name|default:'dear member' }}",
            "email_body": (
                "Thank you for your loyalty to {{ program.name }}: your orders of the last year make you "
                "{{ tier.name }} for the next twelve months."
            ),
        },
        Automation.ReadyMade.WIN_BACK: {
            "name": "Win-back",
            "trigger": Trigger.DAILY,
            "period": Period.YEAR,
            "min_days_inactive": 90,
            "award_points": WIN_BACK_POINTS,
            "email_subject": "We miss you, {{ member.first_name|default:'dear member' }}",
            "email_body": (
                "It has been a while! Here are {{ points }} {{ program.points_name }} to welcome you back "
                "to {{ program.name }}."
            ),
        },
        Automation.ReadyMade.ANNIVERSARY: {
            "name": "Anniversary bonus",
            "trigger": Trigger.DAILY,
            "period": Period.YEAR,
            "on_enrollment_anniversary": True,
            "award_points": ANNIVERSARY_POINTS,
            "email_subject": "Happy anniversary, {{ member.first_name|default:'dear member' }}!",
            "email_body": (
                "Another year with {{ program.name }}: thank you! We added {{ points }} "
                "{{ program.points_name }} to your account."
            ),
        },
    }


def automations_install_ready_made(*, program: Program) -> list[tuple[Automation, bool]]:
    """Create the program's ready-made automations ("VIP by purchase history", "Win-back",
    "Anniversary bonus"), inactive, unless they exist: idempotent, and staff edits of an
    installed one are kept. The unique constraint `automation_one_ready_made` settles a race.
    Returns (automation, created) for each."""
    installed = []
    for ready_made, defaults in _ready_made_defaults(program).items():
        automation, created = Automation.objects.get_or_create(
            program=program, ready_made=ready_made, defaults={**defaults, "is_active": False}
        )
        installed.append((automation, created))
    return installed


def automations_demo_load(*, program: Program, now: dt.datetime) -> str:
    """The demo program's automations (`load_demo`): install the ready-made ones, switch on the
    anniversary bonus and run the program's daily automations once as of `now` so the demo shows
    runs. Win-back stays off, with the catalog's first money-off reward as a gift, so that the demo
    shows what switching it on would give its lapsed members (docs/automations.md, "Before
    switching on"). Idempotent: a second call installs and fires nothing new (same period).
    Returns a one-line summary."""
    installed = automations_install_ready_made(program=program)
    Automation.objects.filter(program=program, ready_made=Automation.ReadyMade.ANNIVERSARY).update(is_active=True)
    gift = Reward.objects.filter(program=program, kind=Reward.Kind.AMOUNT_OFF, is_active=True).order_by("position")
    win_back = [a for a, created in installed if created and a.ready_made == Automation.ReadyMade.WIN_BACK]
    if win_back and gift.exists():
        Automation.objects.filter(pk=win_back[0].pk).update(reward_id=gift.values_list("pk", flat=True).first())
    event_automations_forget()  # an update() sends no post_save
    result = automations_run(now=now, program=program)
    created = sum(1 for _, was_created in installed if was_created)
    return (
        f"Automations: {created} ready-made installed ({len(installed) - created} already there), anniversary on, "
        f"win-back off (its audience and cost are shown before switching on); {result.runs} firings, "
        f"{result.points} points, {result.emails} emails."
    )
