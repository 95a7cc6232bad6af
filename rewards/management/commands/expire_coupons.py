from django.core.management.base import BaseCommand, CommandParser

from loyalty.management.commands._as_of import add_now_argument, parse_now
from rewards import services


class Command(BaseCommand):
    help = "Expire unused coupons past their expiry date; points back per the program's policy (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        result = services.coupons_expire(now=now)
        self.stdout.write(
            f"{result.coupons} coupons expired, {result.refunded} refunded ({result.points} points) "
            f"as of {now.isoformat()}"
        )
