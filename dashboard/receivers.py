"""Reactions of the dashboard app to loyalty signals (docs/contributing.md)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from loyalty.models import Program
from loyalty.signals import demo_loaded

from . import rollups


@receiver(demo_loaded, dispatch_uid="dashboard.rollup_demo")
def rollup_demo(sender: Any, *, program: Program, now: Any, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: roll up the demo's finished days (the dashboard app is installed
    last, so this runs after the other apps added their demo data)."""
    result = rollups.rollup_program(program, now=now)
    if stdout is not None:
        stdout.write(f"Dashboard: {result} (http://127.0.0.1:8000/admin/dashboard/)")
