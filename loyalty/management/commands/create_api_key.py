"""`create_api_key PROGRAM NAME [--scope read --scope write --scope adjust] [--expires ISO]`.

Prints the new key once, alone on stdout (so `KEY=$(manage.py create_api_key shop pos)`
works); what was created goes to stderr. Only the key's hash is stored.
"""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from loyalty.models import Program, ProgramAPIKey
from loyalty.services import api_key_create

SCOPES = [scope.value for scope in ProgramAPIKey.Scope]


class Command(BaseCommand):
    help = "Create an API key for a program and print it once (it is stored hashed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("program", help="The program's slug.")
        parser.add_argument("name", help="Who uses the key, e.g. 'webshop' or 'POS store 12' (50 characters max).")
        parser.add_argument(
            "--scope",
            action="append",
            choices=SCOPES,
            dest="scopes",
            help="Repeat for several; default: read and write (adjust must be asked for).",
        )
        parser.add_argument(
            "--expires",
            help="ISO 8601 date or time after which the key stops working; without an offset it is "
            "read in the program's time zone. Default: never.",
        )

    def handle(self, *args: object, **options: object) -> None:
        program = Program.objects.filter(slug=options["program"]).first()
        if program is None:
            raise CommandError(f"No program with the slug {options['program']!r}.")
        expires = self._expiry(options["expires"], program)  # type: ignore[arg-type]
        try:
            api_key, key = api_key_create(
                program=program,
                name=options["name"],  # type: ignore[arg-type]
                scopes=options["scopes"] or None,  # type: ignore[arg-type]
                expiry_date=expires,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items())) from exc
        self.stderr.write(
            f"API key {api_key.prefix} {api_key.name!r} for program {program.slug}, scopes "
            f"{', '.join(api_key.scopes) or '(none)'}, "
            f"{'expires ' + api_key.expiry_date.isoformat() if api_key.expiry_date else 'never expires'}. "
            "Store it now: it cannot be shown again."
        )
        self.stdout.write(key)

    @staticmethod
    def _expiry(value: str | None, program: Program) -> dt.datetime | None:
        if not value:
            return None
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise CommandError(f"--expires: {value!r} is not an ISO 8601 date or time.") from exc
        if timezone.is_naive(moment):
            moment = moment.replace(tzinfo=program.tz)
        if moment <= timezone.now():
            raise CommandError("--expires is in the past.")
        return moment
