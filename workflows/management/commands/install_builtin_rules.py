from django.core.management.base import BaseCommand, CommandError, CommandParser

from loyalty.models import Program
from workflows import builtins


class Command(BaseCommand):
    help = (
        "Install the built-in earning rules (inactive) in the given programs (slugs), or in every program. "
        "Idempotent: rules already installed are left as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("programs", nargs="*", metavar="PROGRAM", help="Program slugs (default: all).")

    def handle(self, *args: object, **options: object) -> None:
        slugs: list[str] = options["programs"]  # type: ignore[assignment]
        programs = Program.objects.order_by("id")
        if slugs:
            programs = programs.filter(slug__in=slugs)
            missing = set(slugs) - set(programs.values_list("slug", flat=True))
            if missing:
                raise CommandError(f"Unknown program: {', '.join(sorted(missing))}.")
        for program in programs:
            installed = builtins.builtin_rules_install(program=program)
            created = sum(1 for _, was_created in installed if was_created)
            self.stdout.write(
                f"{program.slug}: {created} built-in rules installed ({len(installed) - created} already there)"
            )
