"""Reactions of the rewards app to loyalty signals (docs/contributing.md)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from loyalty.models import Program
from loyalty.signals import demo_loaded

from . import demo


@receiver(demo_loaded, dispatch_uid="rewards.add_demo_rewards")
def add_demo_rewards(sender: Any, *, program: Program, now: Any, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: the demo catalog and coupons (`rewards.demo`), once."""
    line = demo.demo_rewards_load(program=program, now=now)
    if stdout is not None:
        stdout.write(line)
