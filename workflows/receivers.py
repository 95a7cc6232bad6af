"""Reactions of the workflows app to the signals of lower apps (docs/contributing.md). Each calls
a service. Most run after the sender's transaction committed, so an error there must not undo
or fail what the sender did: it is logged (and the daily jobs catch up where they can). The
member import's tier signals are the exception: asked and sent inside the import, they answer
or raise."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from cards.signals import card_claimed, import_tier_names_check, import_tiers_assign
from loyalty.models import Member, Program
from loyalty.signals import demo_loaded, member_enrolled
from tiers import services as tier_services
from tiers.signals import tier_changed

from . import automations, budgets, builtins, demo, fraud, referrals, selectors
from .models import Automation, EarningRule, FraudLimits, ProgramBudget

logger = logging.getLogger(__name__)


def _safely(what: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception:
        logger.exception("workflows: %s failed", what)


@receiver(member_enrolled, dispatch_uid="workflows.on_member_enrolled")
def on_member_enrolled(sender: Any, *, program: Program, member: Member, **kwargs: Any) -> None:
    """A new member: their referral (if they came with a code), the signup bonus, then the
    automations triggered by enrolment."""
    if member.referred_by_id is not None:
        referrer = Member.objects.filter(pk=member.referred_by_id).first()
        if referrer is not None:
            _safely("referral", lambda: referrals.referral_create(friend=member, referrer=referrer))
    _safely("signup bonus", lambda: builtins.signup_bonus_award(member=member))
    _safely(
        "automations (enrolled)",
        lambda: automations.automations_on_event(trigger="member_enrolled", member_id=member.pk, program_id=program.pk),
    )


@receiver(card_claimed, dispatch_uid="workflows.on_card_claimed")
def on_card_claimed(sender: Any, *, program: Program, member: Member, **kwargs: Any) -> None:
    """A customer claimed a card: an anonymous card member who now has an email gets the
    signup bonus they could not get at the first purchase (once: the bonus has its key)."""
    _safely("signup bonus (claim)", lambda: builtins.signup_bonus_award(member=Member.objects.get(pk=member.pk)))


@receiver(import_tier_names_check, dispatch_uid="workflows.import_tier_names_check")
def import_tier_names_unknown(sender: Any, *, program: Program, names: list[str], **kwargs: Any) -> list[str]:
    """A member import's dry run (and apply) asks which tier names of its file are no tier of
    the program; the answer becomes row errors."""
    return tier_services.tier_names_unknown(program=program, names=names)


@receiver(import_tiers_assign, dispatch_uid="workflows.import_tiers_assign")
def import_tiers_set(
    sender: Any, *, program: Program, member_import: Any, assignments: list[tuple[int, str]], **kwargs: Any
) -> None:
    """Inside the import's transaction (not `_safely`): the members get the file's tiers as
    manual tiers; an error fails the whole import."""
    tier_services.tiers_set_manual_by_name(
        program=program,
        assignments=assignments,
        reason=f"Import #{member_import.pk}",
        actor=kwargs.get("actor"),
        now=kwargs.get("now"),
    )


@receiver(tier_changed, dispatch_uid="workflows.on_tier_changed")
def on_tier_changed(sender: Any, *, program: Program, member_id: int, **kwargs: Any) -> None:
    _safely(
        "automations (tier changed)",
        lambda: automations.automations_on_event(trigger="tier_changed", member_id=member_id, program_id=program.pk),
    )


@receiver(demo_loaded, dispatch_uid="workflows.add_demo_rules")
def add_demo_rules(sender: Any, *, program: Program, now: Any, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: the demo program's earning rules (`workflows.demo`), once."""
    lines = [
        demo.demo_rules_load(program=program, now=now),
        demo.demo_built_ins_load(program=program, now=now),
        automations.automations_demo_load(program=program, now=now),
        demo.demo_budgets_load(program=program, now=now),
        demo.demo_fraud_load(program=program, now=now),
    ]
    if stdout is not None:
        for line in lines:
            stdout.write(line)


@receiver(post_save, sender=Program, dispatch_uid="workflows.install_builtin_rules")
def install_builtin_rules(sender: Any, *, instance: Program, created: bool, raw: bool = False, **kwargs: Any) -> None:
    """A new program gets the built-in earning rules, inactive (`builtins.builtin_rules_install`).
    After the commit, like the other reactions here: the program exists whatever happens, and
    `manage.py install_builtin_rules` installs what a failed run missed. Not for fixtures (raw)."""
    if not created or raw:
        return
    program_id = instance.pk

    def install() -> None:
        program = Program.objects.filter(pk=program_id).first()
        if program is not None:
            _safely("built-in rules", lambda: builtins.builtin_rules_install(program=program))

    transaction.on_commit(install)


@receiver(post_save, sender=Automation, dispatch_uid="workflows.automation_saved")
@receiver(post_delete, sender=Automation, dispatch_uid="workflows.automation_deleted")
def forget_event_automations(sender: Any, **kwargs: Any) -> None:
    """An automation changed: the remembered "no automation for this event" answers go."""
    automations.event_automations_forget()


@receiver(post_save, sender=EarningRule, dispatch_uid="workflows.rule_saved")
@receiver(post_delete, sender=EarningRule, dispatch_uid="workflows.rule_deleted")
@receiver(m2m_changed, sender=EarningRule.tiers.through, dispatch_uid="workflows.rule_tiers_changed")
def forget_active_rules(sender: Any, **kwargs: Any) -> None:
    """A rule changed: the remembered active rules go."""
    selectors.active_rules_forget()


@receiver(post_save, sender=ProgramBudget, dispatch_uid="workflows.program_budget_saved")
@receiver(post_delete, sender=ProgramBudget, dispatch_uid="workflows.program_budget_deleted")
def forget_program_budgets(sender: Any, **kwargs: Any) -> None:
    """A program's budget changed: the remembered budgets go."""
    budgets.program_budgets_forget()


@receiver(post_save, sender=FraudLimits, dispatch_uid="workflows.fraud_limits_saved")
@receiver(post_delete, sender=FraudLimits, dispatch_uid="workflows.fraud_limits_deleted")
def forget_fraud_limits(sender: Any, **kwargs: Any) -> None:
    """A program's fraud limits changed: the remembered limits go."""
    fraud.limits_forget()
