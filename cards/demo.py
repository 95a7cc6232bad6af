"""The cards part of `manage.py load_demo` (run by `receivers.add_demo_cards` on `demo_loaded`).

Everything goes through the services, as staff, the POS and customers would do it, so the
demo holds exactly what the live system would: a bulk batch of stock cards, plastic cards
handed to members who only had the app's digital card, purchases on new cards that enrol
anonymous members (and earn points through the ledger), two of them claimed online with the
PIN, a lost card and a stolen stock card blocked, two cards replaced.

Once per program: a program that has a batch noted `DEMO_NOTE` is left as it is, so running
`load_demo` again changes nothing. The batch is committed before the rest (its generation
runs in its own transactions); everything after it runs in one transaction, so a failure
there leaves the batch alone, and the next run, finding it, skips the demo cards: delete
nothing, read the error, fix, and load the demo into a fresh database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, Q

from loyalty import services as loyalty_services
from loyalty.models import Activity, Member, Program

from . import batches, numbers, services
from .models import Card, CardBatch

DEMO_NOTE = "Demo batch"
DEMO_QUANTITY = 500
DEMO_ASSIGNED = 40
# Purchases at the till on cards from the batch: (amount, items). The first CLAIMED are
# claimed online afterwards with the PIN printed on the card.
DEMO_PURCHASES = (
    ("7.60", [("Cappuccino", "3.80", "coffee", 2)]),
    ("16.00", [("House blend 500 g", "16.00", "beans", 1)]),
    ("5.70", [("Flat white", "4.20", "coffee", 1), ("Croissant", "1.50", "bakery", 1)]),
    ("38.00", [("Colombia Huila 1 kg", "38.00", "beans", 1)]),
    (
        "12.40",
        [("Chai latte", "4.50", "tea", 1), ("Cinnamon roll", "3.20", "bakery", 1), ("Espresso", "4.70", "coffee", 1)],
    ),
)
DEMO_CLAIMS = (("Nora", "Keller"), ("Tom", "Baker"))


@dataclass
class DemoCards:
    batch: CardBatch
    created: bool
    assigned: int = 0
    enrolled: int = 0
    claimed: int = 0
    blocked: int = 0
    replaced: int = 0

    def line(self, seconds: float) -> str:
        batch = self.batch
        if not self.created:
            return (
                f"Cards: demo batch #{batch.pk} of {batch.quantity} cards exists "
                f"({batch.get_status_display().lower()}): left as it is."
            )
        return (
            f"Cards: batch #{batch.pk} of {batch.quantity} physical cards "
            f"({batch.get_status_display().lower()}, note {DEMO_NOTE!r}); {self.assigned} assigned to members, "
            f"{self.enrolled} purchases on new cards enrolled anonymous members ({self.claimed} claimed with "
            f"the PIN), {self.blocked} blocked, {self.replaced} replaced, in {seconds:.1f} s."
        )


def _members_with_only_a_digital_card(program: Program, limit: int) -> list[Member]:
    """Active members of the program whose one card is digital (the card every new member
    gets), oldest first. Queries: 1."""
    return list(
        Member.objects.filter(program=program, status=Member.Status.ACTIVE)
        .annotate(
            card_count=Count("cards"),
            digital_count=Count("cards", filter=Q(cards__kind=Card.Kind.DIGITAL)),
        )
        .filter(card_count=1, digital_count=1)
        .select_related("program")
        .order_by("pk")[:limit]
    )


def demo_cards_load(*, program: Program, actor: Any, now: dt.datetime) -> DemoCards:
    """Add the demo cards to `program` unless its demo batch exists (then nothing is written).
    `actor` is the staff user of the demo: staff actions are recorded as theirs; purchases
    and claims, as customers' actions, have no actor."""
    existing = CardBatch.objects.filter(program=program, note=DEMO_NOTE).order_by("pk").first()
    if existing is not None:
        return DemoCards(batch=existing, created=False)

    batch = batches.batch_create(program=program, quantity=DEMO_QUANTITY, note=DEMO_NOTE, actor=actor)
    # With eager tasks the generation ran at commit and this finds the batch done; with a
    # broker, this generates it here and the worker's delivery finds it done (or locked).
    batch = batches.batch_generate(batch_id=batch.pk)
    result = DemoCards(batch=batch, created=True)
    if batch.status != CardBatch.Status.DONE:
        raise RuntimeError(f"The demo card batch #{batch.pk} did not complete: {batch.error or batch.status}")

    stock = iter(Card.objects.filter(batch=batch).order_by("pk").values_list("number", flat=True))
    with transaction.atomic():
        member_cards = _assign_to_members(program, actor, now, stock, result)
        enrolled = _purchases_on_new_cards(program, now, stock, result)
        _claims(program, now, enrolled, result)
        # A lost member card is blocked; a stolen box of stock is blocked card by card.
        # Fall back on the anonymous members' cards when few members exist.
        in_use = member_cards + enrolled[len(DEMO_CLAIMS) :]
        for card in in_use[:1]:
            services.card_block(card=card, actor=actor, now=now)
            result.blocked += 1
        stolen = Card.objects.get(number=next(stock))
        services.card_block(card=stolen, actor=actor, now=now)
        result.blocked += 1
        # Replacements: one with a stock card handed out at the till, one with a new number.
        for card, new_number in zip(in_use[1:3], (next(stock), None), strict=False):
            services.card_replace(card=card, actor=actor, now=now, new_number=new_number)
            result.replaced += 1
    batch.refresh_from_db()
    return result


def _assign_to_members(program: Program, actor: Any, now: dt.datetime, stock: Any, result: DemoCards) -> list[Card]:
    cards = []
    for member in _members_with_only_a_digital_card(program, DEMO_ASSIGNED):
        cards.append(services.card_assign(program=program, number=next(stock), member=member, actor=actor, now=now))
    result.assigned = len(cards)
    return cards


def _purchases_on_new_cards(program: Program, now: dt.datetime, stock: Any, result: DemoCards) -> list[Card]:
    """A purchase at the till on each of a few stock cards: the card enrols an anonymous
    member, the purchase is recorded and earns its points through the ledger."""
    cards = []
    for n, (amount, lines) in enumerate(DEMO_PURCHASES, start=1):
        number = next(stock)
        member = services.member_for_card(program=program, number=number, now=now)
        order_id = f"demo-card-{n}"
        activity = loyalty_services.activity_record(
            program=program,
            member=member,
            type=Activity.Type.PURCHASE,
            occurred_at=now,
            order_id=order_id,
            amount=Decimal(amount),
            channel=Activity.Channel.POS,
            items=[
                {"name": name, "price": price, "category": category, "quantity": quantity}
                for name, price, category, quantity in lines
            ],
        )
        points = program.points_for_amount(Decimal(amount))
        if points > 0:
            loyalty_services.points_earn(
                program=program,
                member_id=member.pk,
                points=points,
                activity=activity,
                reason="Purchase",
                reference=order_id,
                now=now,
            )
        cards.append(Card.objects.select_related("program").get(number=number))
        result.enrolled += 1
    return cards


def _claims(program: Program, now: dt.datetime, enrolled: list[Card], result: DemoCards) -> None:
    """Customers claim their card online with the number and the PIN printed on it."""
    for card, (first_name, last_name) in zip(enrolled, DEMO_CLAIMS, strict=False):
        services.card_claim(
            program=program,
            number=card.number,
            pin=numbers.pin_for(card.number),
            email=f"{first_name}.{last_name}@example.com".lower(),
            first_name=first_name,
            last_name=last_name,
            now=now,
        )
        result.claimed += 1
