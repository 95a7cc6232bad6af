import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from loyalty.selectors import ledger_problems


class Command(BaseCommand):
    help = (
        "Check every member: cached balances equal the sums of entries, lots' remainders match "
        "their allocations, no lot is over-consumed. Exits non-zero naming each member on a mismatch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk", type=int, default=200_000, help="Member ids per checking query.")
        parser.add_argument("--limit", type=int, default=100, help="Print at most this many problems.")

    def handle(self, *args: object, **options: object) -> None:
        started = time.monotonic()
        count = 0
        members: set[int] = set()
        for problem in ledger_problems(chunk=options["chunk"]):  # type: ignore[arg-type]
            count += 1
            members.add(problem.member_id)
            if count <= options["limit"]:  # type: ignore[operator]
                self.stderr.write(str(problem))
        elapsed = time.monotonic() - started
        if count:
            raise CommandError(
                f"ledger mismatch: {count} problems in {len(members)} members (first: member {min(members)})"
            )
        self.stdout.write(f"ledger OK ({elapsed:.1f} s)")
