from django.core.management.base import BaseCommand, CommandParser

from loyalty.management.commands._as_of import add_now_argument, parse_now
from workflows import birthdays


class Command(BaseCommand):
    help = (
        "Report the birthday activity of every member whose birthday (program time zone) is today or within "
        "the lookback days, in programs with an active birthday rule (idempotent: once per member per year)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)
        parser.add_argument(
            "--lookback-days",
            type=int,
            default=birthdays.DEFAULT_LOOKBACK_DAYS,
            help="Also award birthdays of this many past days (catches up missed runs).",
        )

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        result = birthdays.birthdays_award(now=now, lookback_days=options["lookback_days"])  # type: ignore[arg-type]
        self.stdout.write(
            f"{result.members} birthdays awarded: {result.points} points in {result.programs} programs; "
            f"{result.already} already awarded, {result.blocked} blocked skipped, {result.errors} errors "
            f"as of {now.isoformat()}"
        )
        if result.errors:
            self.stderr.write(f"{result.errors} members failed; see the log.")
