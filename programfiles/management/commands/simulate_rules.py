"""`simulate_rules PROGRAM [--days N | --since D --until D] [--rules-file FILE | --draft] [--format text|json|csv]`:
the period's stored activities replayed against the live rules, the open draft's or a program
file's earning rules, beside what the live rules gave; writes nothing (docs/simulation.md)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from loyalty import errors
from loyalty.models import Program
from programfiles import selectors
from programfiles.draft_rules import rules_from_document
from programfiles.export import DocumentUnreadable, loads
from programfiles.loading import DocumentInvalid
from workflows import simulation


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from exc


class Command(BaseCommand):
    help = "Replay a period's activities against the live rules or a program file's rules (writes nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("program", help="The program's slug.")
        parser.add_argument("--days", type=int, help="The last N days, today included (default 30).")
        parser.add_argument("--since", help="First day (YYYY-MM-DD, program time zone).")
        parser.add_argument("--until", help="Last day, included (YYYY-MM-DD; default today).")
        parser.add_argument("--rules-file", help="A program file (YAML or JSON): replay its earning rules.")
        parser.add_argument("--draft", action="store_true", help="Replay the program's open draft's earning rules.")
        parser.add_argument("--format", choices=["text", "json", "csv"], default="text")
        parser.add_argument("--now", help="Run as of this ISO time (default: now).")

    def handle(self, *args: Any, **options: Any) -> None:
        program = Program.objects.filter(slug=options["program"]).first()
        if program is None:
            raise CommandError(f"No program with slug {options['program']!r}.")
        now = dt.datetime.fromisoformat(options["now"]) if options["now"] else timezone.now()
        if options["days"] is not None and (options["since"] or options["until"]):
            raise CommandError("Give --days or --since/--until, not both.")
        if options["since"]:
            since = _date(options["since"])
            until = _date(options["until"]) if options["until"] else program.local_date(now)
            if until < since:
                raise CommandError("--until is before --since.")
            start, end = simulation.period_of_dates(program=program, since=since, until=until)
        elif options["until"]:
            raise CommandError("--until needs --since.")
        else:
            days = options["days"] if options["days"] is not None else 30
            if days < 1:
                raise CommandError("--days must be at least 1.")
            start, end = simulation.period_of_days(program=program, days=days, now=now)
        rules = None
        if options["draft"] and options["rules_file"]:
            raise CommandError("Give --draft or --rules-file, not both.")
        if options["draft"]:
            try:
                rules = selectors.draft_rules(program)
            except errors.NotFound as exc:
                raise CommandError(f"{program.slug} has no open draft.") from exc
        if options["rules_file"]:
            source = options["rules_file"]
            try:
                document = loads(Path(source).read_text(encoding="utf-8"))
                rules = rules_from_document(program=program, document=document)
            except OSError as exc:
                raise CommandError(f"Cannot read {source}: {exc}") from exc
            except DocumentUnreadable as exc:
                raise CommandError(str(exc)) from exc
            except DocumentInvalid as exc:
                for problem in exc.problems:
                    self.stderr.write(str(problem))
                raise CommandError(f"{source}: {len(exc.problems)} problem(s).") from exc
        result = simulation.replay(program=program, since=start, until=end, rules_=rules)
        fmt = options["format"]
        if fmt == "json":
            self.stdout.write(simulation.as_json(result))
        elif fmt == "csv":
            self.stdout.write(result.csv(), ending="")
        else:
            self.stdout.write(result.text(), ending="")
