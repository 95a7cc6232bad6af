"""The shared shape of the scheduled-email commands: `--now`, `--chunk-size`, one line of result."""

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from loyalty.management.commands._as_of import add_now_argument, parse_now
from notifications import email_schedules


class ScheduleCommand(BaseCommand):
    # The job of notifications.email_schedules the command runs (keyword arguments now, chunk_size).
    job: Callable[..., Any]

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)
        parser.add_argument(
            "--chunk-size", type=int, default=email_schedules.CHUNK_SIZE, help="Members per transaction."
        )

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        result = type(self).job(now=now, chunk_size=options["chunk_size"])
        skipped = (
            f", skipped (done for the period): {', '.join(result.skipped_programs)}" if result.skipped_programs else ""
        )
        self.stdout.write(
            f"{result.queued} messages queued for {result.programs} programs ({result.chunks} chunks) "
            f"as of {now.isoformat()}{skipped}"
        )
