from django.core.management.base import BaseCommand, CommandParser

from loyalty.management.commands._as_of import add_now_argument, parse_now
from tiers import services


class Command(BaseCommand):
    help = "Evaluate every member's tier: downgrades after retention, upgrades, ended manual tiers (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)
        parser.add_argument("--chunk-size", type=int, default=20_000, help="Members per transaction.")

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        result = services.tiers_evaluate(now=now, chunk_size=options["chunk_size"])  # type: ignore[arg-type]
        self.stdout.write(
            f"{result.members} tier changes: {result.upgrades} upgrades, {result.downgrades} downgrades, "
            f"{result.manual_expired} manual tiers ended ({result.chunks} chunks) as of {now.isoformat()}"
        )
