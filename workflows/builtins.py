"""Built-in activities: the ready-made earning rules every program gets (inactive until staff
switch them on in the admin), and the signup bonus paid on enrolment.

Each ready-made rule is an ordinary `EarningRule` marked with its `builtin` kind, so staff edit
its points, caps and conditions like any rule; the unique constraint
`rule_one_builtin_per_program` keeps one of each kind per program, which makes installing
idempotent (a second install creates nothing and keeps staff edits).
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from loyalty import errors
from loyalty.models import Member, Program

from . import services
from .models import Builtin, EarningRule

logger = logging.getLogger(__name__)

# Members enrolled through these channels get no signup bonus (see `signup_bonus_award`).
NO_SIGNUP_BONUS_CHANNELS = frozenset({Member.Channel.IMPORT})


def _presets(program: Program) -> dict[str, dict[str, Any]]:
    """The defaults of each built-in rule. Points are round numbers a merchant recognises;
    the per-amount rule leaves `points` empty so it follows the program's earn rate."""
    return {
        Builtin.SIGNUP: {
            "name": "Welcome bonus",
            "kind": EarningRule.Kind.FIXED,
            "points": Decimal(100),
            # The lifetime cap equal to the points makes it pay once per member even if the shop
            # also reports a signup activity of its own.
            "cap_lifetime": 100,
        },
        Builtin.PURCHASE: {
            "name": f"Points per {program.currency} spent",
            "kind": EarningRule.Kind.PER_AMOUNT,
            "points": None,
        },
        Builtin.BIRTHDAY: {"name": "Birthday bonus", "kind": EarningRule.Kind.FIXED, "points": Decimal(200)},
        Builtin.SOCIAL_SHARE: {
            "name": "Social share",
            "kind": EarningRule.Kind.FIXED,
            "points": Decimal(10),
            "cap_per_day": 10,
        },
        Builtin.STORE_VISIT: {
            "name": "Store visit",
            "kind": EarningRule.Kind.FIXED,
            "points": Decimal(20),
            "cap_per_day": 20,
        },
    }


def builtin_rules_install(*, program: Program) -> list[tuple[EarningRule, bool]]:
    """Create the program's built-in rules that it does not have yet, all inactive, and return
    (rule, created) for every built-in kind. Idempotent: an installed rule (even edited or
    switched on by staff) is left as it is; a concurrent install is settled by the unique
    constraint `rule_one_builtin_per_program`. Queries: 1 + 2 per rule created."""
    existing = {r.builtin: r for r in EarningRule.objects.filter(program=program).exclude(builtin="")}
    installed: list[tuple[EarningRule, bool]] = []
    for builtin, defaults in _presets(program).items():
        rule = existing.get(builtin)
        if rule is not None:
            installed.append((rule, False))
            continue
        rule = EarningRule(program=program, builtin=builtin, trigger=builtin, is_active=False, **defaults)
        try:
            rule.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:  # a preset that fails validation is a bug of this module
            raise errors.InvalidInput(f"Invalid built-in rule {builtin}.", builtin=builtin) from exc
        try:
            with transaction.atomic():
                rule.save(force_insert=True)
        except IntegrityError:  # installed meanwhile by a concurrent call
            installed.append((EarningRule.objects.get(program=program, builtin=builtin), False))
            continue
        installed.append((rule, True))
    return installed


def signup_bonus_award(*, member: Member, now: dt.datetime | None = None) -> services.ActivityResult | None:
    """Report a newly enrolled member's `signup` activity when the program has an active rule
    for it, so the signup rules (the built-in "Welcome bonus" or the merchant's own) pay.

    Exactly once per member: the activity carries the idempotency key `signup:<member id>`
    and is dated by the enrolment, so a second call (a retried signal, a second enrolment of
    the same customer) is a replay that posts nothing. No bonus (returns None) for:
    - members created by a CSV import (`import` channel): a merchant migrating thousands of
      existing customers does not mean to give each a welcome bonus;
    - anonymous members of an unassigned card (`card` channel, no email and no portal
      login): nobody signed up yet. Calling this again once the card is claimed (the member
      has an email or a login) pays the bonus;
    - blocked members, and programs without an active signup rule (no activity is stored).
    Queries: 2 when nothing is due; the activity service's otherwise."""
    member = Member.objects.select_related("program").get(pk=member.pk)
    program = member.program
    if member.enrollment_channel in NO_SIGNUP_BONUS_CHANNELS or member.is_blocked:
        return None
    if member.enrollment_channel == Member.Channel.CARD and not (member.email or member.user_id):
        return None
    if not EarningRule.objects.filter(program=program, trigger="signup", is_active=True).exists():
        return None
    try:
        return services.activity_report(
            program=program,
            member=member,
            type="signup",
            occurred_at=member.enrolled_at,
            idempotency_key=f"signup:{member.pk}",
            now=now,
        )
    except errors.IdempotencyConflict:
        # A concurrent call with the same key committed first: the bonus is paid.
        logger.info("Signup bonus of member %s already reported by a concurrent call", member.pk)
        return None
