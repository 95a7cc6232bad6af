"""Reactions of the cards app to loyalty signals (docs/contributing.md). Each calls a service."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from django.dispatch import receiver

from loyalty.models import Member, Program
from loyalty.signals import demo_loaded, member_anonymised_in_transaction, member_enrolled

from . import demo, services

logger = logging.getLogger(__name__)


@receiver(member_enrolled, dispatch_uid="cards.issue_digital_card_on_enrolment")
def issue_digital_card_on_enrolment(sender: Any, *, member: Member, **kwargs: Any) -> None:
    """Every new member gets a digital card unless a card was assigned at enrolment (docs/api.md:
    `POST /members` with `card_number`; a purchase on an unassigned card). Runs after the
    enrolment committed, so it must not fail the enrolment: an error is logged and the member
    stays without a digital card (staff or a later call can issue one)."""
    try:
        services.card_issue_digital_if_cardless(member=member)
    except Exception:
        logger.exception("Could not issue a digital card to member %s", member.pk)


@receiver(member_anonymised_in_transaction, dispatch_uid="cards.block_cards_on_anonymisation")
def block_cards_on_anonymisation(sender: Any, *, member: Member, actor: Any, now: dt.datetime, **kwargs: Any) -> None:
    """An anonymised member's cards identify nobody any more: each active one is blocked (in the
    anonymisation's transaction; an error rolls it back)."""
    services.member_cards_block(member=member, actor=actor, now=now)


@receiver(demo_loaded, dispatch_uid="cards.add_demo_cards")
def add_demo_cards(
    sender: Any, *, program: Program, actor: Any, now: dt.datetime, stdout: Any = None, **kwargs: Any
) -> None:
    """`manage.py load_demo`: the demo's cards (`cards.demo`), once per program, and one line
    on the command's output. An error propagates: the operator sees it and the command fails."""
    started = time.monotonic()
    result = demo.demo_cards_load(program=program, actor=actor, now=now)
    if stdout is not None:
        stdout.write(result.line(time.monotonic() - started))
