"""Reactions of the portal to lower apps' signals (docs/contributing.md)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from loyalty.models import Program
from loyalty.signals import demo_loaded

from . import demo


@receiver(demo_loaded, dispatch_uid="portal.demo_portal_line")
def demo_portal_line(sender: Any, *, program: Program, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: say where the demo program's portal is and whom to log in as."""
    line = demo.demo_portal_line(program=program)
    if stdout is not None:
        stdout.write(line)
    requests_line = demo.demo_deletion_requests(program=program, actor=kwargs.get("actor"))
    if requests_line and stdout is not None:
        stdout.write(requests_line)


@receiver(demo_loaded, dispatch_uid="portal.demo_widget")
def demo_widget(sender: Any, *, program: Program, stdout: Any = None, **kwargs: Any) -> None:
    """`manage.py load_demo`: the demo program's shop widget on, and how to try it."""
    line = demo.demo_widget_setup(program=program)
    if stdout is not None:
        stdout.write(line)
