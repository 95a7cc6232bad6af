"""`export_program PROGRAM [--format yaml|json] [--output FILE]`: a program's whole configuration
as one document (docs/program-files.md). `--schema` prints the format's JSON Schema instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from loyalty.models import Program
from programfiles.export import FORMATS, dumps, export_document
from programfiles.schema import schema_text


class Command(BaseCommand):
    help = "Write a program's configuration (settings, tiers, rules, rewards, emails, webhooks) as YAML or JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("program", nargs="?", help="The program's slug.")
        parser.add_argument("--format", choices=FORMATS, default="yaml")
        parser.add_argument("--output", help="Write to this file instead of the standard output.")
        parser.add_argument("--schema", action="store_true", help="Print the JSON Schema of program files.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["schema"]:
            text = schema_text()
        else:
            if not options["program"]:
                raise CommandError("Name the program (its slug), or ask for --schema.")
            program = Program.objects.filter(slug=options["program"]).first()
            if program is None:
                raise CommandError(f"No program with the slug {options['program']!r}.")
            text = dumps(export_document(program), options["format"])
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {options['output']}.")
        else:
            self.stdout.write(text, ending="")
