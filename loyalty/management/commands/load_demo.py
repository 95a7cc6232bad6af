"""`manage.py load_demo`: two demo brands with members and 14 months of history, plus staff logins.

The history is posted in chronological order through `loyalty.services`, each call with
`now=` set to the moment it happens, so the result is exactly what the live system would
hold: purchases earn pending points that are released 14 days later, refunds take points
back (leaving a debt when they were spent), rewards are redeemed, staff adjust and transfer,
and the release and expiry jobs run at every month end. `verify_ledger` passes afterwards.

The second brand, "Demo Espresso Bar" (a fifth of the members), shows a merchant with several
brands: the `demo-bar-manager` login sees only that brand
(docs/back-office.md, "Roles and programs").

Idempotent: when a demo program exists its members and history are left as they are (the
ledger is append-only, so a second pass would only duplicate history); every run resets the
staff users' passwords and prints the login lines (or, with `--login-file`, writes the logins
to that file for `make run` (config/devrun.py) to print last, after its own lines): `demo`
(a superuser) and one user per role (`ROLE_USERS`).
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import os
import random
import secrets
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.utils import timezone

from loyalty import errors, services
from loyalty.models import Activity, LedgerEntry, Member, Program, StaffProgram
from loyalty.signals import demo_loaded

DEMO_SLUG = "demo"
LOGIN_URL = "http://127.0.0.1:8000/admin/"
DEMO_USER = "demo"
BAR_SLUG = "demo-bar"
# The role logins: (username, group, slugs of the programs the user is limited to; () = every one).
ROLE_USERS = (
    ("demo-owner", "Owner", ()),
    ("demo-manager", "Manager", ()),
    ("demo-support", "Support", ()),
    ("demo-bar-manager", "Manager", (BAR_SLUG,)),
)

FIRST_NAMES = (
    "Léa",
    "Emma",
    "Chloé",
    "Manon",
    "Camille",
    "Inès",
    "Sarah",
    "Julie",
    "Zoé",
    "Alice",
    "Clara",
    "Louise",
    "Anna",
    "Mia",
    "Jade",
    "Nina",
    "Eva",
    "Laura",
    "Sofia",
    "Hannah",
    "Lucas",
    "Hugo",
    "Louis",
    "Gabriel",
    "Arthur",
    "Jules",
    "Thomas",
    "Nathan",
    "Paul",
    "Léo",
    "Adam",
    "Raphaël",
    "Maxime",
    "Antoine",
    "Noah",
    "Ethan",
    "Samuel",
    "Victor",
    "Mathis",
    "Oscar",
    "Ben",
    "Finn",
    "Marco",
    "Diego",
    "Yuki",
    "Amir",
    "Omar",
)
LAST_NAMES = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Müller",
    "Schmidt",
    "Rossi",
    "Russo",
    "Fernández",
    "López",
    "Smith",
    "Jones",
    "Nguyen",
    "Kowalski",
)
CAFE_MENU = (
    ("Espresso", "2.40", "coffee"),
    ("Cappuccino", "3.80", "coffee"),
    ("Flat white", "4.20", "coffee"),
    ("Filter coffee", "3.00", "coffee"),
    ("Chai latte", "4.50", "tea"),
    ("Croissant", "1.90", "bakery"),
    ("Cinnamon roll", "3.20", "bakery"),
    ("Cookie", "2.50", "bakery"),
)
SHOP_MENU = (
    ("Ethiopia Yirgacheffe 250 g", "12.50", "beans"),
    ("Colombia Huila 1 kg", "38.00", "beans"),
    ("House blend 500 g", "16.00", "beans"),
    ("Decaf Peru 250 g", "11.00", "beans"),
    ("V60 dripper", "24.00", "equipment"),
    ("Paper filters (100)", "6.50", "equipment"),
    ("Gift card", "25.00", "gift"),
)
REWARDS = ((100, "Free coffee"), (150, "Coffee and pastry"), (250, "Free 250 g bag of beans"))
GOODWILL = (
    "Goodwill: order arrived late",
    "Goodwill: wrong grind delivered",
    "Welcome bonus for a referral",
    "Compensation: machine out of order",
    "Event attendance bonus",
)
CORRECTIONS = ("Correction: purchase counted twice", "Correction: staff test order")


@dataclass(order=True)
class Event:
    at: dt.datetime
    priority: int  # at the same moment: jobs (0) before postings (1)
    seq: int
    kind: str = field(compare=False)
    data: dict[str, Any] = field(compare=False, default_factory=dict)


@dataclass
class Stats:
    members: int = 0
    purchases: int = 0
    refunds: int = 0
    redemptions: int = 0
    restores: int = 0
    adjustments: int = 0
    transfers: int = 0
    blocked: int = 0
    job_runs: int = 0


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace(" ", "")


class DemoHistory:
    """Draws members and their behaviour from a seeded random generator and posts the
    history through the services in time order. Queries: a few per posting."""

    def __init__(self, *, program: Program, actor: Any, members: int, now: dt.datetime, seed: int) -> None:
        self.program = program
        self.actor = actor
        self.member_count = members
        self.now = now
        self.rng = random.Random(seed)
        self.tz = program.tz
        self.start = program.start_of_day(program.local_date(now) - dt.timedelta(days=426))
        self.stats = Stats()
        self.members: dict[int, Member] = {}
        self.available: dict[int, int] = {}  # last known available points (a hint, not the truth)
        self.blocked: set[int] = set()
        self.queue: list[Event] = []
        self._seq = 0

    # -- scheduling ----------------------------------------------------------------------------

    def push(self, at: dt.datetime, kind: str, priority: int = 1, **data: Any) -> None:
        if at < self.now:
            self._seq += 1
            heapq.heappush(self.queue, Event(at, priority, self._seq, kind, data))

    def local_moment(self, day: dt.date, first_hour: int = 8, last_hour: int = 19) -> dt.datetime:
        seconds = self.rng.randrange(first_hour * 3600, (last_hour + 1) * 3600)
        return self.program.start_of_day(day) + dt.timedelta(seconds=seconds)

    def month_ends(self) -> Iterator[dt.datetime]:
        day = self.program.local_date(self.start).replace(day=1)
        while True:
            day = (day + dt.timedelta(days=32)).replace(day=1)
            moment = self.program.start_of_day(day)
            if moment >= self.now:
                return
            yield moment

    def plan(self) -> None:
        span_days = (self.now - self.start).days
        for moment in self.month_ends():
            self.push(moment, "jobs", priority=0)
        for i in range(self.member_count):
            # A launch wave in the first month, then a steady trickle of sign-ups.
            offset = self.rng.uniform(0, 30) if self.rng.random() < 0.3 else self.rng.uniform(0, span_days - 7)
            enrolled_at = self.local_moment(self.program.local_date(self.start + dt.timedelta(days=offset)))
            self.push(enrolled_at, "enrol", index=i)
        for _ in range(self.member_count // 7):
            self.push(self.start + dt.timedelta(days=self.rng.uniform(20, span_days)), "adjust")
        for _ in range(4):
            self.push(self.start + dt.timedelta(days=self.rng.uniform(120, span_days)), "transfer")
        for _ in range(max(1, self.member_count // 60)):
            self.push(self.now - dt.timedelta(days=self.rng.uniform(2, 60)), "block")

    def plan_purchases(self, member: Member) -> None:
        """A member's visits: regulars at the café, monthly bean buyers, occasional shoppers;
        one in four stops coming at some point."""
        profile = self.rng.choices(("regular", "monthly", "occasional"), weights=(20, 45, 35))[0]
        mean_gap = {"regular": 12, "monthly": 40, "occasional": 90}[profile]
        end = self.now
        if self.rng.random() < 0.25:
            end = member.enrolled_at + (self.now - member.enrolled_at) * self.rng.uniform(0.2, 0.9)
        moment = member.enrolled_at + dt.timedelta(hours=self.rng.uniform(0, 48))
        while moment < end:
            self.push(moment, "purchase", member_id=member.pk, profile=profile)
            gap = self.rng.expovariate(1 / mean_gap) + 0.5
            moment = self.local_moment(self.program.local_date(moment + dt.timedelta(days=gap)))

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> Stats:
        self.plan()
        while self.queue:
            event = heapq.heappop(self.queue)
            getattr(self, f"do_{event.kind}")(event.at, **event.data)
        # Bring the program up to the present, as the beat jobs would.
        services.points_release(now=self.now, program=self.program)
        services.points_expire(now=self.now, program=self.program)
        self.stats.job_runs += 2
        return self.stats

    def _track(self, result: services.PostResult) -> None:
        self.available[result.member_id] = result.balance.available
        for member_id, balance in result.other_balances.items():
            self.available[member_id] = balance.available

    def active_members(self) -> list[int]:
        return [pk for pk in self.members if pk not in self.blocked]

    def do_jobs(self, at: dt.datetime) -> None:
        services.points_release(now=at, program=self.program)
        services.points_expire(now=at, program=self.program)
        self.stats.job_runs += 2
        # The jobs moved points; refresh the hints in one query.
        self.available.update(Member.objects.filter(program=self.program).values_list("id", "available"))

    def do_enrol(self, at: dt.datetime, index: int) -> None:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        birthday = dt.date(self.rng.randint(1952, 2006), 1, 1) + dt.timedelta(days=self.rng.randrange(365))
        member, _created = services.member_enrol(
            program=self.program,
            external_id=f"demo-{index + 1:04d}",
            email=f"{_ascii(first)}.{_ascii(last)}{index + 1}@example.com",
            first_name=first,
            last_name=last,
            birthday=birthday,
            channel=self.rng.choice((Member.Channel.POS, Member.Channel.POS, Member.Channel.ONLINE)),
            email_consent=self.rng.random() < 0.7,
            now=at,
        )
        services.activity_record(
            program=self.program,
            member=member,
            type=Activity.Type.SIGNUP,
            occurred_at=at,
            channel=Activity.Channel.POS if member.enrollment_channel == "pos" else "online",
        )
        self.members[member.pk] = member
        self.available[member.pk] = 0
        self.stats.members += 1
        self.plan_purchases(member)

    def do_purchase(self, at: dt.datetime, member_id: int, profile: str) -> None:
        if member_id in self.blocked:
            return
        member = self.members[member_id]
        # A member with enough points sometimes spends them at the counter first.
        if self.available.get(member_id, 0) >= 150 and self.rng.random() < 0.5:
            self.redeem(at, member_id)
        online = profile == "occasional" or (profile == "monthly" and self.rng.random() < 0.5)
        menu, count = (SHOP_MENU, self.rng.randint(1, 3)) if online else (CAFE_MENU, self.rng.randint(1, 3))
        items = []
        for name, price, category in self.rng.sample(menu, count):
            quantity = 1 if online else self.rng.choice((1, 1, 2))
            items.append({"name": name, "category": category, "quantity": quantity, "price": price})
        amount = sum((Decimal(i["price"]) * i["quantity"] for i in items), Decimal("0"))
        self.stats.purchases += 1
        order_id = f"DCR-{self.stats.purchases:06d}"
        activity = services.activity_record(
            program=self.program,
            member=member,
            type=Activity.Type.PURCHASE,
            occurred_at=at,
            order_id=order_id,
            amount=amount,
            channel=Activity.Channel.ONLINE if online else Activity.Channel.POS,
            items=items,
        )
        points = self.program.points_for_amount(amount)
        if points > 0:
            self._track(
                services.points_earn(
                    program=self.program,
                    member_id=member_id,
                    points=points,
                    activity=activity,
                    reason="Purchase",
                    reference=order_id,
                    now=at,
                )
            )
        if self.rng.random() < 0.06:  # returns: a full refund or part of the order
            refund = (
                amount
                if self.rng.random() < 0.5
                else (amount * Decimal(self.rng.uniform(0.2, 0.7))).quantize(Decimal("0.01"))
            )
            if refund > 0:
                self.push(at + dt.timedelta(days=self.rng.uniform(1, 20)), "refund", order_id=order_id, amount=refund)

    def redeem(self, at: dt.datetime, member_id: int) -> None:
        affordable = [r for r in REWARDS if r[0] <= self.available.get(member_id, 0)]
        points, name = self.rng.choice(affordable)
        self.stats.redemptions += 1
        try:
            result = services.points_redeem(
                program=self.program,
                member_id=member_id,
                points=points,
                reason=f"Reward: {name}",
                reference=f"RW-{self.stats.redemptions:05d}",
                now=at,
            )
        except errors.InsufficientPoints:  # the hint was stale (points expired meanwhile)
            self.stats.redemptions -= 1
            self.available[member_id] = 0
            return
        self._track(result)
        if self.rng.random() < 0.03:  # a cancelled coupon gives the points back
            self.push(at + dt.timedelta(days=self.rng.uniform(0.5, 5)), "restore", entry_id=result.entries[0].id)

    def do_refund(self, at: dt.datetime, order_id: str, amount: Decimal) -> None:
        self._track(
            services.points_reverse_order(
                program=self.program, order_id=order_id, amount=amount, occurred_at=at, now=at
            )
        )
        self.stats.refunds += 1

    def do_restore(self, at: dt.datetime, entry_id: int) -> None:
        self._track(
            services.points_restore(
                program=self.program, entry_id=entry_id, reason="Coupon cancelled at the counter", now=at
            )
        )
        self.stats.restores += 1

    def do_adjust(self, at: dt.datetime) -> None:
        if not self.members:
            return
        member_id = self.rng.choice(list(self.members))
        if self.rng.random() < 0.8:
            points, reason = self.rng.choice((25, 50, 50, 100, 200)), self.rng.choice(GOODWILL)
        else:
            points, reason = -self.rng.choice((10, 20, 30, 50)), self.rng.choice(CORRECTIONS)
        self._track(
            services.points_adjust(
                program=self.program, member_id=member_id, points=points, reason=reason, actor=self.actor, now=at
            )
        )
        self.stats.adjustments += 1

    def do_transfer(self, at: dt.datetime) -> None:
        candidates = [pk for pk in self.active_members() if self.available.get(pk, 0) >= 60]
        if not candidates or len(self.active_members()) < 2:
            return
        sender = self.rng.choice(candidates)
        receiver = self.rng.choice([pk for pk in self.active_members() if pk != sender])
        points = min(self.available[sender], self.rng.choice((50, 60)))
        try:
            result = services.points_transfer(
                program=self.program,
                from_member_id=sender,
                to_member_id=receiver,
                points=points,
                reason="Household pooling",
                now=at,
            )
        except errors.InsufficientPoints:
            return
        self._track(result)
        self.stats.transfers += 1

    def do_block(self, at: dt.datetime) -> None:
        candidates = self.active_members()
        if candidates:
            member = self.members[self.rng.choice(candidates)]
            services.member_set_status(member=member, status=Member.Status.BLOCKED, actor=self.actor)
            self.blocked.add(member.pk)
            self.stats.blocked += 1


class Command(BaseCommand):
    help = (
        "Create the demo programs 'Demo Coffee Roasters' and 'Demo Espresso Bar' with members and 14 months "
        "of history (each skipped when it exists), and (re)set the passwords of the staff logins "
        "('demo' and one per role)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--members", type=int, default=300, help="Members to create (default 300).")
        parser.add_argument("--seed", type=int, default=20240501, help="Random seed of the history.")
        parser.add_argument(
            "--login-file",
            help="Write the staff login (JSON: username, password; mode 0600) to this file instead of printing it.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user, password = self.staff_user()
        coffee = self.brand(
            options,
            actor=user,
            members=options["members"],
            seed=options["seed"],
            name="Demo Coffee Roasters",
            slug=DEMO_SLUG,
            points_name="beans",
            currency="EUR",
            timezone="Europe/Paris",
            # Finance (docs/liability.md): 100 beans buy 1.00 EUR off; 85% expected to be redeemed.
            point_value=Decimal("0.01"),
            expected_redemption_rate=Decimal("0.85"),
        )
        bar = self.brand(
            options,
            actor=user,
            members=max(3, options["members"] // 5),
            seed=options["seed"] + 1,
            name="Demo Espresso Bar",
            slug=BAR_SLUG,
            points_name="beans",
            currency="EUR",
            timezone="Europe/Paris",
            point_value=Decimal("0.01"),
            expected_redemption_rate=Decimal("0.80"),
        )
        roles = self.role_users([coffee, bar])
        if options.get("login_file"):
            login = {"username": DEMO_USER, "password": password, "roles": roles}
            _write_private(options["login_file"], json.dumps(login))
        else:
            self.stdout.write(f"Staff login: {LOGIN_URL}  user: {DEMO_USER}  password: {password}")
            self.stdout.write(f"Role logins (same URL): {role_logins_line(roles)}")

    def brand(self, options: dict[str, Any], *, actor: Any, members: int, seed: int, **fields: Any) -> Program:
        """The demo program `fields["slug"]` with its history (created once), then the higher
        apps' part of the demo (each idempotent)."""
        started = time.monotonic()
        program = Program.objects.filter(slug=fields["slug"]).first()
        if program is not None:
            self.stdout.write(f"Demo program {program.name!r} exists: members and history left as they are.")
        else:
            # Commits are the cost of a history of thousands of small transactions; a lost tail
            # after a crash would only shorten the demo. Session-local.
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")
            program = services.program_create(
                earn_rate=Decimal("1"), min_redemption=100, expiry_days=365, pending_days=14, **fields
            )
            stats = DemoHistory(program=program, actor=actor, members=members, now=timezone.now(), seed=seed).run()
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO DEFAULT")
            self.stdout.write(
                f"Created {program.name!r} (slug {program.slug}): {stats.members} members, "
                f"{stats.purchases} purchases, {stats.refunds} refunds, "
                f"{stats.redemptions} redemptions ({stats.restores} cancelled), "
                f"{stats.adjustments} adjustments, {stats.transfers} transfers, {stats.blocked} blocked members, "
                f"{stats.job_runs} job runs in {time.monotonic() - started:.1f} s."
            )
        # Higher apps (cards, tiers, rewards...) add their part of the demo; each receiver is
        # idempotent (it checks what it made before), like this command.
        demo_loaded.send(sender=Program, program=program, actor=actor, now=timezone.now(), stdout=self.stdout)
        # Some parts post with a past `now` (a story, referrals, cards): release what is due
        # since, as the beat job would have (only when something is due: a job run is a row).
        now = timezone.now()
        due = LedgerEntry.objects.filter(
            program=program, released_at__isnull=True, points__gt=0, available_at__lte=now
        ).exists()
        if due:
            services.points_release(now=now, program=program)
        return program

    def role_users(self, programs: list[Program]) -> list[dict[str, str]]:
        """Create or update one staff user per role (`ROLE_USERS`) with a fresh random password."""
        User = get_user_model()
        by_slug = {program.slug: program for program in programs}
        logins = []
        for username, group_name, slugs in ROLE_USERS:
            password = secrets.token_urlsafe(9)
            user = User.objects.filter(username=username).first() or User(username=username)
            user.email = user.email or f"{username}@example.com"
            user.first_name = user.first_name or group_name
            user.last_name = user.last_name or "Demo"
            user.is_staff = user.is_active = True
            user.is_superuser = False
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get_or_create(name=group_name)[0]])
            limited = [by_slug[slug] for slug in slugs]
            StaffProgram.objects.filter(user=user).exclude(program__in=limited).delete()
            for program in limited:
                StaffProgram.objects.get_or_create(user=user, program=program)
            role = group_name + (f", {', '.join(p.name for p in limited)} only" if limited else "")
            logins.append({"username": username, "password": password, "role": role})
        return logins

    def staff_user(self) -> tuple[Any, str]:
        """Create or update the `demo` superuser with a fresh random password, in the owner group."""
        password = secrets.token_urlsafe(12)
        User = get_user_model()
        user = User.objects.filter(username=DEMO_USER).first() or User(username=DEMO_USER)
        user.email = user.email or "demo@example.com"
        user.first_name = user.first_name or "Demo"
        user.last_name = user.last_name or "Staff"
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        owner, _ = Group.objects.get_or_create(name="Owner")
        user.groups.add(owner)
        return user, password


def role_logins_line(roles: list[dict[str, str]]) -> str:
    """The role logins on one line: "demo-owner / <password> (Owner) · ..."."""
    return " · ".join(f"{r['username']} / {r['password']} ({r['role']})" for r in roles)


def _write_private(path: str, text: str) -> None:
    """Write `text` to `path`, readable by this user only (it holds a password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
