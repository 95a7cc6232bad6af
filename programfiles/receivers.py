"""Reactions of the programfiles app to lower apps' signals."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from loyalty.models import Program
from loyalty.signals import demo_loaded

from . import demo


@receiver(demo_loaded, dispatch_uid="programfiles.add_demo_drafts")
def add_demo_drafts(sender: Any, *, program: Program, actor: Any, now: Any, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: a published version and an open draft (`programfiles.demo`), once."""
    line = demo.demo_drafts_load(program=program, actor=actor, now=now)
    if stdout is not None:
        stdout.write(line)
