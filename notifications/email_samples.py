"""Sample facts for previewing member emails (docs/emails.md, "Templates and branding").

The admin's template editor renders a kind with `sample_data(...)` as the message's `data` (the
shape the outbox stores: plain JSON, dates as ISO strings) for `sample_member(...)` or a real
member of the program; "send me a test" sends the same rendering. Every kind has an entry here,
and each entry fills every variable `email_kinds.VARIABLES` offers for its kind, so a preview
shows every part of a template (a test checks it). The shapes double as the contract for the
code that queues each kind: it stores the same keys.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.utils import translation
from django.utils.formats import date_format

from loyalty.models import Member, Program

from .email_kinds import EmailKind

# Words that differ per language in the samples (reward names, reasons, instructions).
_WORDS = {
    "en": {
        "reason_purchase": "Purchase",
        "reason_bonus": "Double points weekend",
        "reason_added": "Sorry for the late delivery of your order",
        "reason_removed": "Points from a returned order",
        "reward": "10 EUR off your next order",
        "reward_b": "Free shipping",
        "reward_c": "Tote bag",
        "reward_desc": "10 EUR off any order of 30 EUR or more.",
        "reward_b_desc": "Free standard shipping on your next order.",
        "reward_c_desc": "Our organic cotton tote bag.",
        "how_to_use": "Enter the code at checkout on our website, or show it at the till in any of our shops.",
        "benefits": "Double points on every purchase, free shipping and early access to sales.",
        "automation": "Spring newsletter",
        "subject": "Our spring collection is here",
        "body": (
            "Hello Alex,\n\nThe new season has arrived in store and online, "
            "and we added a little thank-you to your account."
        ),
        "friend": "Sam",
        "reason_declined": (
            "Your order of last week is still open: we can delete your data once it is delivered and paid."
        ),
    },
    "fr": {
        "reason_purchase": "Achat",
        "reason_bonus": "Week-end points doublés",
        "reason_added": "Désolés pour le retard de livraison de votre commande",
        "reason_removed": "Points d'une commande retournée",
        "reward": "10 EUR de réduction sur votre prochaine commande",
        "reward_b": "Livraison offerte",
        "reward_c": "Sac en toile",
        "reward_desc": "10 EUR de réduction dès 30 EUR d'achat.",
        "reward_b_desc": "Livraison standard offerte sur votre prochaine commande.",
        "reward_c_desc": "Notre sac en coton bio.",
        "how_to_use": "Saisissez le code lors du paiement sur notre site, ou montrez-le en caisse dans nos boutiques.",
        "benefits": "Points doublés sur chaque achat, livraison offerte et accès anticipé aux soldes.",
        "automation": "Newsletter de printemps",
        "subject": "Notre collection de printemps est arrivée",
        "body": (
            "Bonjour Alex,\n\nLa nouvelle saison est arrivée en boutique et en ligne, "
            "et nous avons ajouté un petit merci à votre compte."
        ),
        "friend": "Sam",
        "reason_declined": (
            "Votre commande de la semaine dernière est encore en cours : nous pourrons effacer vos données "
            "une fois qu'elle sera livrée et payée."
        ),
    },
}


def sample_member(program: Program) -> Member:
    """An unsaved member of `program` with a plausible balance (never written)."""
    return Member(
        program=program,
        first_name="Alex",
        last_name="Martin",
        email="alex.martin@example.com",
        referral_code="ALEX2027",
        available=1250,
        pending=80,
        lifetime_earned=3400,
        redeemed=2150,
        email_consent=True,
    )


def sample_data(kind: str, *, language: str = "en", today: dt.date | None = None) -> dict[str, Any]:
    """The facts of one plausible message of `kind`, as the outbox stores them."""
    words = _WORDS.get(language, _WORDS["en"])
    today = today or dt.date.today()

    def day(days: int) -> str:
        return (today + dt.timedelta(days=days)).isoformat()

    with translation.override(language):
        period = date_format(today.replace(day=1) - dt.timedelta(days=1), "F Y")  # last month
    coupon = {
        "code": "SAVE-7K2Q-9XPD",
        "reward": words["reward"],
        "value": "10.00 EUR",
        "valid_until": day(60),
        "how_to_use": words["how_to_use"],
    }
    rewards = [
        {"name": words["reward"], "points": 1000, "description": words["reward_desc"]},
        {"name": words["reward_b"], "points": 500, "description": words["reward_b_desc"]},
        {"name": words["reward_c"], "points": 1200, "description": words["reward_c_desc"]},
    ]
    tier = {"name": "Gold", "benefits": words["benefits"], "multiplier": Decimal("2")}
    lots = [{"points": 150, "expires_on": day(30)}, {"points": 90, "expires_on": day(45)}]
    samples: dict[str, dict[str, Any]] = {
        EmailKind.WELCOME: {"signup_points": 100},
        EmailKind.POINTS_EARNED: {
            "points": 84,
            "entries": [
                {"points": 42, "reason": words["reason_purchase"]},
                {"points": 42, "reason": words["reason_bonus"]},
            ],
            "activity": {"type": "purchase", "order_id": "A-10293", "amount": "42.00", "occurred_on": day(0)},
        },
        EmailKind.POINTS_ADDED: {"points": 200, "reason": words["reason_added"]},
        EmailKind.POINTS_REMOVED: {"points": 120, "reason": words["reason_removed"]},
        EmailKind.REWARD_REDEEMED: {"points": 1000, "coupon": coupon},
        EmailKind.BUDGET_THRESHOLD: {
            "budget": {
                "what": 'rule "Double points weekend"',
                "name": "Double points weekend",
                "scope": "rule",
                "period": "2026-12",
                "period_label": "month 2026-12",
                "limit": 50000,
                "used": 40120,
                "percent": 80,
            }
        },
        EmailKind.REWARD_REDEEMED_ADMIN: {
            "points": 1000,
            "coupon": coupon,
            "customer": {"name": "Alex Martin", "email": "alex.martin@example.com", "id": 1042},
        },
        EmailKind.POINTS_EXPIRING: {"points": 240, "lots": lots, "expires_on": day(30), "last_chance": False},
        EmailKind.POINTS_REMINDER: {
            "period": period,
            "expiring_soon": 150,
            "next_tier": {"name": "Platinum", "points_needed": 600},
            "rewards": rewards[:2],
        },
        EmailKind.REWARD_WITHIN_REACH: {"reward": rewards[0]},
        EmailKind.TIER_UPGRADED: {"tier": tier, "previous_tier": {"name": "Silver"}},
        EmailKind.TIER_DOWNGRADED: {
            "tier": {"name": "Silver", "benefits": words["benefits"], "multiplier": Decimal("1.5")},
            "previous_tier": {"name": "Gold"},
        },
        EmailKind.TIER_AT_RISK: {
            "tier": tier,
            "evaluation_on": day(14),
            "needed": 300,  # what the tier metric still lacks (points, amount or orders)
            "lower_tier": {"name": "Silver"},
        },
        EmailKind.BIRTHDAY: {"points": 250},
        EmailKind.REFERRAL_REWARDED: {"points": 500, "friend": {"first_name": words["friend"]}, "role": "referrer"},
        EmailKind.CARD_CLAIMED: {"card": {"number": "6001 2345 6789 0128", "last_digits": "0128"}, "points_moved": 320},
        EmailKind.LOGIN_LINK: {"login_url": "https://example.com/p/login/sample-token/", "valid_minutes": 15},
        EmailKind.DELETION_CONFIRMED: {"requested_on": day(-3), "erased_on": day(0)},
        EmailKind.DELETION_DECLINED: {"requested_on": day(-3), "reason": words["reason_declined"]},
        EmailKind.CUSTOM: {
            "automation": {"name": words["automation"]},
            "points": 100,
            "tier": {"name": tier["name"], "benefits": tier["benefits"]},
            "coupon": coupon,
            "subject": words["subject"],
            "body": words["body"],
        },
    }
    return samples[kind]
