"""`manage.py widget_token <program slug> <customer id>`: a shop widget token for one member and
the HTML a shop would paste (docs/portal.md, "The shop widget"), to try the widget by hand."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from loyalty.models import Member, Program
from portal import widget


class Command(BaseCommand):
    help = "Print a shop widget token for a member (by the shop's customer id) and the snippet that shows it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("program", help="The program's slug.")
        parser.add_argument("customer", help="The member's external id (the shop's customer id).")
        parser.add_argument("--minutes", type=int, default=60, help="How long the token is valid (at most 1440).")

    def handle(self, *args: Any, **options: Any) -> None:
        program = Program.objects.filter(slug=options["program"]).first()
        if program is None:
            raise CommandError(f"No program {options['program']!r}.")
        if not program.widget_secret:
            raise CommandError("The program's widget is off: generate a secret in its admin page (Shop widget).")
        if not 0 < options["minutes"] <= widget.MAX_LIFETIME // 60:
            raise CommandError("--minutes must be between 1 and 1440.")
        if not Member.objects.filter(program=program, external_id=options["customer"]).exists():
            self.stderr.write(f"Note: no member of {program.slug} has the customer id {options['customer']!r}.")
        token = widget.token_make(program=program, customer_ref=options["customer"], lifetime=options["minutes"] * 60)
        base = settings.PUBLIC_BASE_URL.rstrip("/")
        frame = base + reverse("portal:widget_frame", args=[program.slug]) + "?token=" + quote(token)
        self.stdout.write(f"token: {token}")
        self.stdout.write(f"data:  {base}{reverse('portal:widget_data', args=[program.slug])}?token={quote(token)}")
        self.stdout.write("snippet (script, drawn in the shop's page):")
        self.stdout.write(
            f'  <div id="loyalty-widget"></div>\n  <script src="{base}{reverse("portal:widget_js")}" '
            f'data-program="{program.slug}" data-token="{token}" data-target="loyalty-widget" defer></script>'
        )
        self.stdout.write("snippet (iframe; the shop's origin must be in the program's widget origins):")
        self.stdout.write(f'  <iframe src="{frame}" title="{program.name}" width="380" height="560"></iframe>')
