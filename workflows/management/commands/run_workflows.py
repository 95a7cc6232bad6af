from django.core.management.base import BaseCommand, CommandParser

from loyalty.management.commands._as_of import add_now_argument, parse_now
from workflows import automations


class Command(BaseCommand):
    help = "Run the daily automations of every program as of --now (idempotent: once per member per period)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)
        parser.add_argument(
            "--chunk-size", type=int, default=automations.DEFAULT_CHUNK_SIZE, help="Members per transaction."
        )

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        result = automations.automations_run(now=now, chunk_size=options["chunk_size"])  # type: ignore[arg-type]
        self.stdout.write(
            f"{result.runs} automation firings of {result.automations} daily automations: {result.points} points, "
            f"{result.tiers} tiers set, {result.emails} emails ({result.chunks} chunks) as of {now.isoformat()}"
        )
