"""Reads of the shop widget (docs/portal.md, "The shop widget"): the program and the member a
widget token names, and what the panel shows, through the portal pages' own selectors. The
whole answer stays within 10 SQL statements (tests/portal/test_widget.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from loyalty.models import Member, Program
from tiers import selectors as tier_selectors
from workflows.models import ReferralSettings

from . import selectors_rewards

REWARDS_SHOWN = 3
NEARLY = 0.25  # a reward is "nearly" within reach when the points missing are at most this share of its cost


def widget_program(*, slug: str) -> Program | None:
    """The active program of the slug. 1 query."""
    return Program.objects.filter(slug=slug, is_active=True).first()


def widget_member(*, program: Program, customer_ref: str) -> Member | None:
    """The program's member with this external id (an anonymised member is nobody). 1 query."""
    member = (
        Member.objects.filter(program_id=program.pk, external_id=customer_ref, anonymised_at__isnull=True)
        .order_by("id")
        .first()
    )
    if member is not None:
        member.program = program  # no second read of the program
    return member


@dataclass
class WidgetData:
    member: Member
    tier: tier_selectors.TierProgress
    rewards: list[selectors_rewards.CatalogItem]  # within reach: available now first, then nearly
    referral: ReferralSettings | None  # the active offer, if any


def _cheapest(item: selectors_rewards.CatalogItem) -> int:
    return item.cost if item.cost is not None else item.low


def within_reach(items: list[selectors_rewards.CatalogItem]) -> list[selectors_rewards.CatalogItem]:
    """The rewards the member may take (no refusal but points) that their points pay for now,
    then those they nearly afford (missing at most NEARLY of the cost), fewest missing first."""
    now = [item for item in items if item.available]
    nearly = sorted(
        (i for i in items if i.refusal is None and 0 < i.missing <= max(1, int(_cheapest(i) * NEARLY))),
        key=lambda i: i.missing,
    )
    return (now + nearly)[:REWARDS_SHOWN]


def widget_data(*, member: Member, now: dt.datetime) -> WidgetData:
    """Everything the panel shows. Queries: 3-4 (tier) + 3 (catalog) + 1 (referral offer)."""
    offer = ReferralSettings.objects.filter(program_id=member.program_id, is_active=True).first()
    return WidgetData(
        member=member,
        tier=tier_selectors.member_tier_progress(member=member, now=now),
        rewards=within_reach(selectors_rewards.catalog_page(member=member, now=now)),
        referral=offer,
    )
