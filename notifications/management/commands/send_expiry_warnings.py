from django.core.management.base import BaseCommand, CommandParser

from loyalty.management.commands._as_of import add_now_argument, parse_now
from notifications import email_schedules


class Command(BaseCommand):
    help = (
        "Queue the points-expiring warnings (N days before) and last chances (the day before), per program time zone. "
        "Set-based, idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)
        parser.add_argument(
            "--chunk-size", type=int, default=email_schedules.CHUNK_SIZE, help="Members per transaction."
        )

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        result = email_schedules.expiry_warnings_send(now=now, chunk_size=options["chunk_size"])  # type: ignore[arg-type]
        skipped = (
            f", skipped (done for the period): {', '.join(result.skipped_programs)}" if result.skipped_programs else ""
        )
        self.stdout.write(
            f"{result.queued} messages queued for {result.programs} programs ({result.chunks} chunks) "
            f"as of {now.isoformat()}{skipped}"
        )
