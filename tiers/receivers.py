"""Reactions of the tiers app to loyalty signals (docs/contributing.md). Each calls a service."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from loyalty.models import LedgerEntry, Member, Program
from loyalty.signals import demo_loaded, points_posted

from . import demo, selectors, services
from .models import Tier

logger = logging.getLogger(__name__)


@receiver(points_posted, dispatch_uid="tiers.upgrade_on_points_posted")
def upgrade_on_points_posted(sender: Any, *, program: Program, member_id: int, **kwargs: Any) -> None:
    """Points were posted (after commit): upgrade the member at once if they now reach a higher
    tier. Must not fail the posting: an error is logged and the nightly run catches up."""
    entries = kwargs.get("entries") or []
    if entries and all(e.activity_id is not None for e in entries):
        return  # an activity's points: the activity service evaluated the tier in its transaction
    if entries and not any(e.kind == LedgerEntry.Kind.EARN for e in entries):
        return  # only earn entries raise a metric (redemptions, adjustments, refunds never upgrade)
    if not selectors.active_tiers(program=program):
        return
    try:
        member = Member.objects.select_related("program").get(pk=member_id)
        services.tier_evaluate_member(member=member)
    except Exception:
        logger.exception("Could not evaluate the tier of member %s", member_id)


@receiver(demo_loaded, dispatch_uid="tiers.add_demo_tiers")
def add_demo_tiers(sender: Any, *, program: Program, now: Any, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: three tiers with members in each (`tiers.demo`), once per program."""
    line = demo.demo_tiers_load(program=program, now=now)
    if stdout is not None:
        stdout.write(line)


@receiver(post_save, sender=Tier, dispatch_uid="tiers.tier_saved")
@receiver(post_delete, sender=Tier, dispatch_uid="tiers.tier_deleted")
def forget_active_tiers(sender: Any, **kwargs: Any) -> None:
    """A tier changed: the remembered active tiers go."""
    selectors.active_tiers_forget()
