"""`manage.py rollup_stats`: roll up each program's finished days (docs/dashboard.md)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard import rollups
from loyalty.management.commands._as_of import add_now_argument, parse_now
from loyalty.models import Program


class Command(BaseCommand):
    help = (
        "Roll up the dashboard's daily figures of every program (or --program) for the local days that "
        "are over and not rolled up yet; --since DATE recomputes from that day, --force from the first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)
        parser.add_argument("--since", help="Recompute from this local day (YYYY-MM-DD) to the last finished one.")
        parser.add_argument("--force", action="store_true", help="Recompute every day from the program's first.")
        parser.add_argument("--program", help="Only this program (its slug).")

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        since = None
        if options["since"]:
            try:
                since = dt.date.fromisoformat(str(options["since"]))
            except ValueError as exc:
                raise CommandError(f"--since: {options['since']!r} is not a date (YYYY-MM-DD).") from exc
        programs = Program.objects.order_by("pk")
        if options["program"]:
            programs = programs.filter(slug=options["program"])
            if not programs.exists():
                raise CommandError(f"--program: no program {options['program']!r}.")
        for result in rollups.rollup_all(now=now, since=since, force=bool(options["force"]), programs=programs):
            self.stdout.write(str(result))
