"""Reactions of the workflows app to loyalty signals (STYLE.md rule 15)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from loyalty.models import Program
from loyalty.signals import demo_loaded

from . import demo


@receiver(demo_loaded, dispatch_uid="workflows.add_demo_rules")
def add_demo_rules(sender: Any, *, program: Program, now: Any, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: the demo program's earning rules (`workflows.demo`), once."""
    line = demo.demo_rules_load(program=program, now=now)
    if stdout is not None:
        stdout.write(line)
