"""Reads of the portal's card pages: the member's cards and the program's earning rules
(issue 12). Each page stays within 10 SQL statements (tests/portal/test_card.py)."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from django.db.models import Q
from django.utils.dates import WEEKDAYS  # Monday = 0, like Weekday; translated names

from cards.models import Card
from cards.printing import card_barcode_svg, card_qr_svg, grouped
from loyalty.models import Member, Program
from workflows.customer_text import rule_customer_text
from workflows.models import EarningRule

CARDS_SHOWN = 10  # a member has one card, rarely a few; the page shows the newest ones


def _svg_data_uri(svg: str) -> str:
    """An SVG as a data: address for an <img>: the portal's policy allows data: images, and an
    image's SVG cannot run or style anything on the page."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


@dataclass(frozen=True)
class CardView:
    card: Card
    grouped_number: str
    qr_src: str
    barcode_src: str
    last_digits: str


def member_active_cards(*, member: Member) -> list[CardView]:
    """The member's active cards, newest first, with their QR code and Code128 barcode drawn
    (SVG). Queries: 1 (cards on the member_id index)."""
    cards = Card.objects.filter(member_id=member.pk, status=Card.Status.ACTIVE).order_by("-id")[:CARDS_SHOWN]
    return [
        CardView(
            card=card,
            grouped_number=grouped(card.number),
            qr_src=_svg_data_uri(card_qr_svg(card.number)),
            barcode_src=_svg_data_uri(card_barcode_svg(card.number)),
            last_digits=card.number[-4:],
        )
        for card in cards
    ]


def member_card(*, member: Member, card_id: int) -> Card | None:
    """An active card of `member` by id, its member and program set from the caller's rows;
    None for another member's card, a blocked one or no card. Queries: 1."""
    card = Card.objects.filter(pk=card_id, member_id=member.pk, status=Card.Status.ACTIVE).first()
    if card is not None:
        card.member = member
        card.program = member.program
    return card


@dataclass(frozen=True)
class RuleView:
    text: str
    ends_at: dt.datetime | None
    tiers: list[str]
    days: list[str]


def earning_rules(*, program: Program, now: dt.datetime) -> list[RuleView]:
    """The program's rules a member can earn with now (active, started, not ended; rules that
    give no points left out), highest priority first, as members read them. Queries: 2 (the
    rules on rule_active_trigger's program, their tiers)."""
    rules = (
        EarningRule.objects.filter(program_id=program.pk, is_active=True)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=now))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .prefetch_related("tiers")
        .order_by("-priority", "id")
    )
    views = []
    for rule in rules:
        if rule.multiplier == 0 or (rule.points == 0 and rule.customer_text.strip() == ""):
            continue
        views.append(
            RuleView(
                text=rule_customer_text(rule, program),
                ends_at=rule.ends_at,
                tiers=[tier.name for tier in sorted(rule.tiers.all(), key=lambda t: t.position)],
                days=[str(WEEKDAYS[day]) for day in sorted(rule.days_of_week) if day in WEEKDAYS],
            )
        )
    return views
