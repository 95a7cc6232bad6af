from django.core.management.base import BaseCommand, CommandParser

from loyalty.management.commands._as_of import add_now_argument, parse_now
from notifications import emails, services


class Command(BaseCommand):
    help = (
        "Send the webhook deliveries and the emails that are due (first attempts a worker missed, retries). "
        "Idempotent; safe on several workers at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_now_argument(parser)
        parser.add_argument("--limit", type=int, default=500, help="At most this many deliveries (and emails) per run.")

    def handle(self, *args: object, **options: object) -> None:
        now = parse_now(options["now"])  # type: ignore[arg-type]
        result = services.outbox_deliver(now=now, limit=options["limit"])  # type: ignore[arg-type]
        self.stdout.write(
            f"{result.attempted} deliveries attempted: {result.succeeded} succeeded, {result.failed} failed "
            f"for good, {result.attempted - result.succeeded - result.failed} to retry, as of {now.isoformat()}"
        )
        sent = emails.outbox_emails_deliver(now=now, limit=options["limit"])  # type: ignore[arg-type]
        self.stdout.write(
            f"{sent.attempted} emails attempted: {sent.sent} sent, {sent.suppressed} suppressed, "
            f"{sent.failed} failed for good, {sent.attempted - sent.sent - sent.suppressed - sent.failed} to retry"
        )
