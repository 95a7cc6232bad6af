"""What a wallet card shows, read once for both wallets: the card number, the member's name,
available points and tier, the program's name, colours and portal link."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from cards.models import Card
from loyalty.models import Member, Program
from tiers.selectors import member_tier

from .branding import PassColours, pass_colours
from .errors import CardNotEligible


@dataclass(frozen=True)
class CardFacts:
    number: str
    program: Program
    member: Member
    member_name: str
    balance: int
    points_name: str
    tier_name: str  # "" without a tier
    language: str
    colours: PassColours
    portal_url: str
    terms: str


def card_facts(card: Card) -> CardFacts:
    """The facts of an active card of an active member (else CardNotEligible). Queries: the
    card's member and program when not already loaded, and the member's tier (1)."""
    if card.status != Card.Status.ACTIVE or card.member_id is None:
        raise CardNotEligible(f"card {card.pk} is {card.status}: only an active card of a member gets a wallet pass")
    member = card.member
    if member.is_blocked:
        raise CardNotEligible(f"member {member.pk} is blocked")
    program = card.program
    state = member_tier(member_id=member.pk)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return CardFacts(
        number=card.number,
        program=program,
        member=member,
        member_name=f"{member.first_name} {member.last_name}".strip(),
        balance=member.available,
        points_name=program.points_name,
        tier_name=state.tier.name if state and state.tier else "",
        language=member.language or program.language,
        colours=pass_colours(program.brand_color),
        portal_url=f"{base}/p/{program.slug}/",
        # Program terms are a field the portal's pages add (issue 12, "program terms"); until
        # then the back of the card links to the portal only.
        terms=getattr(program, "terms", "") or "",
    )
