"""`manage.py staff_role USERNAME ROLE [--programs slug,slug | --all-programs]`: give a member of
staff a role (one of the groups "Owner", "Manager", "Support": the user's groups become that one)
and, optionally, limit them to some programs (docs/back-office.md, "Roles and programs").
The user becomes staff; without --programs or --all-programs their programs are left as they are.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from loyalty.models import Program, StaffProgram

ROLES = ("Owner", "Manager", "Support")


class Command(BaseCommand):
    help = "Give a staff user a role (Owner, Manager or Support) and optionally limit them to programs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=ROLES)
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--programs", help="Comma-separated program slugs the user is limited to.")
        which.add_argument("--all-programs", action="store_true", help="Remove any limit: every program.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r} (create it with createsuperuser or the admin).")
        group = Group.objects.filter(name=options["role"]).first()
        if group is None:
            raise CommandError(f"No group {options['role']!r}: run migrate first.")
        programs = None
        if options["programs"] is not None:
            slugs = [slug.strip() for slug in options["programs"].split(",") if slug.strip()]
            programs = list(Program.objects.filter(slug__in=slugs))
            unknown = sorted(set(slugs) - {p.slug for p in programs})
            if unknown or not slugs:
                raise CommandError(f"Unknown program slug(s): {', '.join(unknown) or '(none given)'}.")
        elif options["all_programs"]:
            programs = []
        with transaction.atomic():
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            user.groups.set([group])
            if programs is not None:
                StaffProgram.objects.filter(user=user).exclude(program__in=programs).delete()
                for program in programs:
                    StaffProgram.objects.get_or_create(user=user, program=program)
        limited = list(StaffProgram.objects.filter(user=user).values_list("program__name", flat=True))
        where = ", ".join(sorted(limited)) if limited else "every program"
        self.stdout.write(f"{user.username}: {group.name}, {where}.")
