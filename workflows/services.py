"""Writes of the workflows app: reporting an activity (it earns by the rules) and a refund.

`activity_report` is the one way an activity earns points: it records the activity, runs the
rules (`workflows.rules`) and posts one ledger entry per firing rule, all in one posting
(`loyalty.services.points_earn_many`), all in one transaction (the caller's, if one is open, as the
API's idempotency layer has).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from cards import services as card_services
from loyalty import errors
from loyalty import services as ledger
from loyalty.models import Activity, IdempotencyRecord, LedgerEntry, Member, Program
from loyalty.services import Balance, PostResult

from . import automations, budgets, fraud, lock_objects, referrals, selectors
from .models import BudgetCut, EarningRule, ReviewHold, RuleAward


@dataclass(frozen=True)
class NewCustomer:
    """A customer the shop names by its external id, with what it knows of them: enrolled by
    their first purchase when the program says so (`Program.enrol_on_first_purchase`)."""

    external_id: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""


@dataclass
class ActivityResult:
    activity: Activity
    awards: list[RuleAward]
    entries: list[LedgerEntry]
    balance: Balance
    replayed: bool = False
    # Why a budget cut or stopped a rule (docs/budgets.md), in words; also stored as `BudgetCut`.
    budget_notes: list[str] = field(default_factory=list)
    hold: ReviewHold | None = None  # its points wait for review (docs/fraud.md)

    @property
    def points(self) -> int:
        return sum(a.points for a in self.awards)

    @property
    def held_for_review(self) -> bool:
        return self.hold is not None


_AWARDS_SQL = (
    f"INSERT INTO {RuleAward._meta.db_table} (rule_id, member_id, activity_id, points, occurred_at) "
    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::timestamptz[]) RETURNING id"
)


def _insert_awards(rows: list[RuleAward]) -> None:
    """Insert the awards of one activity in one statement and set their ids: the statement
    `bulk_create` sends on PostgreSQL, without its query building (a hot path)."""
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _AWARDS_SQL,
            [
                [r.rule_id for r in rows],
                [r.member_id for r in rows],
                [r.activity_id for r in rows],
                [r.points for r in rows],
                [r.occurred_at for r in rows],
            ],
        )
        ids = [row[0] for row in cursor.fetchall()]
    for row, pk in zip(rows, ids, strict=True):
        row.pk = pk
        row._state.adding = False
        row._state.db = connection.alias


def _request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json_items(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Items as JSON (money as decimal strings)."""
    return [{k: (str(v) if isinstance(v, Decimal) else v) for k, v in item.items() if v is not None} for item in items]


def _evaluate_tier(
    *, member: Member, now: dt.datetime, tier_id: int | None = None, lifetime_earned: int | None = None
) -> None:
    """Let the tiers app upgrade the member at once, when it is installed.

    Skipped (no query) when no upgrade is possible: the member is in the highest active tier,
    or (tier metric "points earned") the member's lifetime earned points, an upper bound of the
    points earned in any window, are below every higher tier's threshold. The nightly
    evaluation still runs for everyone."""
    if not apps.is_installed("tiers"):
        return
    from tiers.selectors import active_tiers  # an optional app, a layer below workflows
    from tiers.services import tier_evaluate_member

    if lifetime_earned is not None:
        tiers = active_tiers(program=member.program)
        current = next((t for t in tiers if t.pk == tier_id), None)
        higher = [t for t in tiers if current is None or t.position > current.position]
        if not higher:
            return
        if member.program.tier_metric == Program.TierMetric.POINTS_EARNED and lifetime_earned < min(
            t.threshold for t in higher
        ):
            return
    tier_evaluate_member(member=member, now=now)


ACTIVITY_OPERATION = "activity"


def _replay(*, program: Program, record: IdempotencyRecord, key: str, request_hash: str) -> ActivityResult:
    if record.request_hash != request_hash or "activity_id" not in record.result:
        raise errors.IdempotencyConflict(
            "This idempotency key was already used with a different activity.", idempotency_key=key
        )
    activity = Activity.objects.get(pk=record.result["activity_id"])
    awards = list(RuleAward.objects.filter(activity=activity).select_related("rule").order_by("id"))
    entries = list(LedgerEntry.objects.filter(activity=activity).order_by("id"))
    member = Member.objects.get(pk=activity.member_id)
    notes = list(BudgetCut.objects.filter(activity=activity).order_by("id").values_list("reason", flat=True))
    hold = ReviewHold.objects.filter(activity=activity).first()
    return ActivityResult(
        activity=activity,
        awards=awards,
        entries=entries,
        balance=Balance.of(member),
        replayed=True,
        budget_notes=notes,
        hold=hold,
    )


def _member_for_customer(
    *, program: Program, customer: NewCustomer, type: str, channel: str, now: dt.datetime
) -> Member:
    """The member with the customer's external id; unknown, a purchase enrols them when the
    program enrols on first purchase (channel: the purchase's, `api` when it has none), else
    `MemberNotFound`. Exactly once under concurrent purchases: `member_enrol` returns the
    member a concurrent transaction enrolled (the unique external id index decides). Joins the
    caller's transaction, so a refused activity enrols nobody. `DuplicateEmail` when the
    customer's email is another member's."""
    member = Member.objects.filter(program=program, external_id=customer.external_id).first()
    if member is None:
        if type != Activity.Type.PURCHASE or not program.enrol_on_first_purchase:
            raise errors.MemberNotFound(
                "No member of this program matches the reference.", external_id=customer.external_id
            )
        member, _created = ledger.member_enrol(
            program=program,
            external_id=customer.external_id,
            email=customer.email,
            first_name=customer.first_name,
            last_name=customer.last_name,
            channel=channel if channel in Member.Channel.values else Member.Channel.API,
            now=now,
        )
    member.program = program
    return member


def activity_report(
    *,
    program: Program,
    member: Member | None = None,
    customer: NewCustomer | None = None,
    type: str,
    occurred_at: dt.datetime,
    order_id: str = "",
    amount: Decimal | None = None,
    currency: str = "",
    channel: str = "",
    items: Iterable[Mapping[str, Any]] = (),
    data: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
    context: dict[str, Any] | None = None,
) -> ActivityResult:
    """Record an activity and post what the earning rules give for it, in one transaction.

    Each firing rule gets a `RuleAward` row and its own earn entry (reason: the rule's name,
    dated by `occurred_at`), all posted in ONE ledger posting (`points_earn_many`: one member
    lock, one statement, one `points_posted` with every entry). The member row is locked
    first, so caps hold under concurrency. With `idempotency_key` (kept in the one
    idempotency store as `activity:<key>`, with the activity's id): a retry with the same
    request returns the first result and posts nothing; the same key with another request
    raises `IdempotencyConflict`. Refusals: `MemberBlocked`, `Conflict` (an order reported
    twice), `InvalidInput`.

    The member is `member`, or the one `customer` names by external id: a purchase of a
    customer not enrolled yet enrols them in the same transaction (`_member_for_customer`).
    `context`: facts for the posting's in-transaction receivers (`points_post`), e.g.
    `{"announced_by": "birthday"}` when the caller's own email announces the points.
    """
    now = now or timezone.now()
    if member is None:
        if customer is None:
            raise errors.InvalidInput("Name the member or the customer.", field="member")
        with transaction.atomic():  # the enrolment and the activity commit together
            return activity_report(
                program=program,
                member=_member_for_customer(program=program, customer=customer, type=type, channel=channel, now=now),
                type=type,
                occurred_at=occurred_at,
                order_id=order_id,
                amount=amount,
                currency=currency,
                channel=channel,
                items=items,
                data=data,
                idempotency_key=idempotency_key,
                now=now,
                context=context,
            )
    if type == Activity.Type.REFUND:
        raise errors.InvalidInput("Report refunds with refund_report.", field="type")
    item_list = _json_items(items)
    request_hash = _request_hash(
        {
            "member": member.pk,
            "type": type,
            "occurred_at": occurred_at.isoformat() if occurred_at else None,
            "order_id": order_id,
            "amount": str(amount) if amount is not None else None,
            "currency": currency,
            "channel": channel,
            "items": item_list,
            "data": data or {},
        }
    )
    store_key = ledger.idempotency_key_namespaced(ACTIVITY_OPERATION, idempotency_key) if idempotency_key else None
    # No savepoint of our own (2 statements per activity): a refusal is decided before anything
    # is written and raised after the block, so a caller's transaction stays usable; an error
    # after a write propagates through the block and rolls the caller's transaction back.
    with transaction.atomic(savepoint=False):
        outcome = _report(
            program=program,
            member=member,
            type=type,
            occurred_at=occurred_at,
            order_id=order_id,
            amount=amount,
            currency=currency,
            channel=channel,
            item_list=item_list,
            data=data,
            key=idempotency_key,
            store_key=store_key,
            request_hash=request_hash,
            now=now,
            context=context,
        )
    if isinstance(outcome, errors.LoyaltyError):
        raise outcome
    return outcome


def _report(
    *,
    program: Program,
    member: Member,
    type: str,
    occurred_at: dt.datetime,
    order_id: str,
    amount: Decimal | None,
    currency: str,
    channel: str,
    item_list: list[dict[str, Any]],
    data: dict[str, Any] | None,
    key: str | None,
    store_key: str | None,
    request_hash: str,
    now: dt.datetime,
    context: dict[str, Any] | None = None,
) -> ActivityResult | errors.LoyaltyError:
    """`activity_report`'s work inside its transaction. Returns a refusal (not raised) when
    nothing was written yet; raises on anything after the first write."""
    facts = selectors.activity_facts(
        program=program, type=type, occurred_at=occurred_at, amount=amount, channel=channel, items=item_list
    )
    # The budgets this activity may spend, locked BEFORE the member (docs/budgets.md); None
    # (no query) when no rule of this type and not the program has a budget.
    gate = budgets.gate_lock(
        program=program,
        owners=budgets.activity_owners(
            program=program, candidates=selectors.active_rules(program=program, trigger=type), facts=facts
        ),
        now=now,
    )
    # One statement: the member's lock, its tier, and whether the key was used before.
    locked = lock_objects.member_with_tier_for_update(member_id=member.pk, program=program, key=store_key)
    if store_key is not None and key is not None and locked is not None and locked.key_seen:
        try:
            record = IdempotencyRecord.objects.get(program=program, key=store_key)
            return _replay(program=program, record=record, key=key, request_hash=request_hash)
        except errors.LoyaltyError as exc:
            return exc
    if locked is None or locked.program_id != program.id:
        return errors.MemberNotFound("No such member in this program.", member_id=member.pk)
    if locked.is_blocked:
        return errors.MemberBlocked("The member is blocked.", member_id=member.pk)
    locked.program = program
    try:
        # Writes nothing when it refuses (a second purchase of an order inserts nothing).
        activity = ledger.activity_record(
            program=program,
            member=locked,
            type=type,
            occurred_at=occurred_at,
            order_id=order_id,
            amount=amount,
            currency=currency,
            channel=channel,
            items=item_list,
            data=data,
            reported_at=now,
        )
    except errors.LoyaltyError as exc:
        return exc
    tier = (locked.tier_id_now, Decimal(locked.tier_multiplier_now or 1))
    awards = selectors.awards_for(
        program=program, member_id=locked.pk, facts=facts, tier=tier, budgets=gate, reported_at=now
    )
    budget_notes = gate.reasons if gate is not None else []
    # Fraud limits and backdating (docs/fraud.md), under the member's lock taken above.
    verdict = None
    if awards:
        verdict = fraud.velocity_check(
            program=program, member_id=locked.pk, activity=activity, points=sum(a.points for a in awards), now=now
        )
    available_at = (
        ledger.HELD_UNTIL
        if verdict is not None
        else fraud.availability(program=program, occurred_at=occurred_at, reported_at=now)
    )
    rows = [
        RuleAward(rule=a.rule, member_id=locked.pk, activity=activity, points=a.points, occurred_at=occurred_at)
        for a in awards
    ]
    entries: list[LedgerEntry] = []
    result: PostResult | None = None
    outcome = {"activity_id": activity.pk}
    busy = errors.IdempotencyConflict("This idempotency key is being used by another request.", idempotency_key=key)
    if awards:
        # One posting for all the awards; the activity's key is recorded by the same
        # statement (with the activity's id), so a retry replays this activity.
        result = ledger.points_earn_many(
            program=program,
            member_id=locked.pk,
            awards=[ledger.EarnAward(points=a.points, reason=a.reason, reference=order_id) for a in awards],
            activity=activity,
            idempotency_key=store_key,
            operation=ACTIVITY_OPERATION,
            request_hash=request_hash,
            result=outcome,
            now=now,
            # What the in-transaction receivers learn: the activity's type, and whether another
            # event announces these points (the birthday job's own email).
            context={"activity_type": type, **(context or {})},
            available_at=available_at,
        )
        if result.replayed:  # a concurrent first attempt committed meanwhile
            raise busy
        entries = result.entries
    elif store_key is not None:
        claimed = ledger.idempotency_key_claim(
            program=program,
            key=store_key,
            operation=ACTIVITY_OPERATION,
            payload={},
            request_hash=request_hash,
            result=outcome,
            now=now,
        )
        if claimed is not None:
            raise busy
    _insert_awards(rows)
    budgets.gate_spend(gate=gate, program=program, member_id=locked.pk, now=now, activity=activity)
    hold = None
    if verdict is not None:
        hold = fraud.hold_record(
            program=program,
            member_id=locked.pk,
            activity=activity,
            verdict=verdict,
            points=sum(a.points for a in awards),
            now=now,
        )
    referral = None
    if type == Activity.Type.PURCHASE:
        # A referred friend's first qualifying purchase rewards both (same transaction).
        referral = referrals.referral_on_purchase(activity=activity, member=locked, now=now)
    if result is not None and referral is None:
        balance = result.balance
    else:
        locked.refresh_from_db(fields=list(ledger.BALANCE_FIELDS))
        balance = Balance.of(locked)
    # In the transaction and as of the activity's moment; the tiers receiver of
    # `points_posted` leaves postings of activities to this call (no second evaluation).
    _evaluate_tier(member=locked, now=now, tier_id=locked.tier_id_now, lifetime_earned=balance.lifetime_earned)
    member_id = locked.pk
    transaction.on_commit(
        lambda: automations.automations_on_event(
            trigger="activity", member_id=member_id, activity_type=type, now=now, program_id=program.pk
        )
    )
    return ActivityResult(
        activity=activity, awards=rows, entries=entries, balance=balance, budget_notes=budget_notes, hold=hold
    )


def refund_report(
    *,
    program: Program,
    order_id: str,
    amount: Decimal,
    occurred_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> PostResult:
    """A (partial) refund of an order: its points are taken back in proportion
    (`loyalty.services.points_reverse_order`), then the member's tier is re-evaluated.
    Refusals: `OrderNotFound`, `RefundExceedsOrder`, `IdempotencyConflict`."""
    now = now or timezone.now()
    with transaction.atomic():
        result = ledger.points_reverse_order(
            program=program,
            order_id=order_id,
            amount=amount,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            now=now,
        )
    # No tier evaluation: a refund only lowers the metric, and downgrades are the nightly job's.
    return result


def rule_create(
    *, program: Program, name: str, trigger: str, kind: str, tiers: Iterable[Any] = (), **fields: Any
) -> EarningRule:
    """Add an earning rule to a program (the admin's form does the same through the model).
    `tiers`: the tier condition (tiers of this program; empty = every member)."""
    rule = EarningRule(program=program, name=name, trigger=trigger, kind=kind, **fields)
    tiers = list(tiers)
    try:
        rule.full_clean()
    except ValidationError as exc:
        raise errors.InvalidInput("Invalid earning rule.", fields=exc.message_dict) from exc
    if any(t.program_id != program.id for t in tiers):
        raise errors.InvalidInput("Choose tiers of this rule's program.", field="tiers")
    with transaction.atomic():
        rule.save()
        rule.tiers.set(tiers)
    return rule


def member_enrol_with_card(
    *,
    program: Program,
    external_id: str | None = None,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    birthday: dt.date | None = None,
    email_consent: bool = False,
    referred_by: Member | None = None,
    card_number: str | None = None,
    channel: str = Member.Channel.API,
    language: str = "",
    now: dt.datetime | None = None,
) -> tuple[Member, bool]:
    """Enrol a customer with their card, all or nothing: the card `card_number` is assigned,
    else a digital card is issued at once (so the caller can show it). A known `external_id`
    returns that member and False and changes nothing (no card). A refused card
    (`CardNotFound`, `CardNotAssignable`) enrols nobody. The referral, signup bonus and
    automations follow on commit (`member_enrolled`)."""
    with transaction.atomic():
        member, created = ledger.member_enrol(
            program=program,
            external_id=external_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            birthday=birthday,
            email_consent=email_consent,
            referred_by=referred_by,
            channel=channel,
            language=language,
            now=now,
        )
        if created and card_number:
            card_services.card_assign(program=program, number=card_number, member=member, now=now)
        elif created:
            # Now rather than by the cards receiver after the commit: the caller's answer (and
            # its idempotent replay) shows the card; the receiver then finds it and adds none.
            card_services.card_issue_digital_if_cardless(member=member, now=now)
    return member, created
