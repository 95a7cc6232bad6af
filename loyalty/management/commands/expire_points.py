from django.core.management.base import BaseCommand, CommandParser

from loyalty import services

from ._as_of import add_now_argument, parse_now


class Command(BaseCommand):
    help = "Expire every lot whose expiry moment has passed (set-based, chunked, idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=20_000,
            help="Lots per transaction (expiry: the members of that many lots, all their due lots).",
        )

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        result = services.points_expire(now=now, chunk_size=options["chunk_size"])  # type: ignore[arg-type]
        self.stdout.write(
            f"expired {result.points} points in {result.lots} lots of {result.members} members "
            f"({result.chunks} chunks) as of {now.isoformat()}"
        )
