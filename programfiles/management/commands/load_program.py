"""`load_program FILE [--dry-run] [--program SLUG]`: create or update a program from a program
file (docs/program-files.md), atomically; `--dry-run` prints the changes and writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from programfiles.export import DocumentUnreadable, loads
from programfiles.loading import DocumentInvalid, load_document


class Command(BaseCommand):
    help = "Create or update a program from a YAML or JSON program file (all or nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The program file (YAML or JSON); - reads the standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Show the changes; write nothing.")
        parser.add_argument("--program", help="Load into the program with this slug (instead of the file's).")

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["file"]
        try:
            text = self.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot read {source}: {exc}") from exc
        try:
            result = load_document(loads(text), slug=options["program"], dry_run=options["dry_run"])
        except DocumentUnreadable as exc:
            raise CommandError(str(exc)) from exc
        except DocumentInvalid as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(f"{source}: {len(exc.problems)} problem(s); nothing was written.") from exc
        slug = result.program.slug
        lines = result.report()
        if not lines:
            self.stdout.write(f"No changes: program {slug} already matches {source}.")
            return
        for line in lines:
            self.stdout.write(line)
        if result.dry_run:
            self.stdout.write(f"Dry run: {len(lines)} change(s) to program {slug}; nothing was written.")
        else:
            self.stdout.write(f"Loaded {source} into program {slug}: {len(lines)} change(s).")
