"""The kinds of email a program sends (docs/emails.md): who gets each, whether it needs the
member's consent, whether it is on for a new program, and the variables its templates may use.

A template's context is built from plain data only (`notifications.email_context`): dicts,
lists, strings, numbers and dates, never model instances, so a merchant's template cannot reach
other rows or methods. `VARIABLES` lists what each kind offers; a template naming anything else
is refused when it is saved.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class EmailKind(models.TextChoices):
    WELCOME = "welcome", "Welcome"
    POINTS_EARNED = "points_earned", "Points earned"
    POINTS_ADDED = "points_added", "Points added by staff"
    POINTS_REMOVED = "points_removed", "Points removed by staff"
    REWARD_REDEEMED = "reward_redeemed", "Reward redeemed"
    REWARD_REDEEMED_ADMIN = "reward_redeemed_admin", "Reward redeemed (copy to the program's admin)"
    POINTS_EXPIRING = "points_expiring", "Points expiring soon"
    POINTS_REMINDER = "points_reminder", "Points statement (periodic)"
    REWARD_WITHIN_REACH = "reward_within_reach", "Reward within reach"
    TIER_UPGRADED = "tier_upgraded", "Tier upgraded"
    TIER_DOWNGRADED = "tier_downgraded", "Tier downgraded"
    TIER_AT_RISK = "tier_at_risk", "Tier at risk"
    BIRTHDAY = "birthday", "Birthday"
    REFERRAL_REWARDED = "referral_rewarded", "Referral rewarded"
    CARD_CLAIMED = "card_claimed", "Card claimed"
    LOGIN_LINK = "login_link", "Portal login link"
    DELETION_CONFIRMED = "deletion_confirmed", "Data deletion confirmed"
    DELETION_DECLINED = "deletion_declined", "Data deletion declined"
    CUSTOM = "custom", "Automation email"
    BUDGET_THRESHOLD = "budget_threshold", "Budget 80 % / 100 % used (to the program's admin)"


@dataclass(frozen=True)
class KindInfo:
    kind: EmailKind
    # Marketing kinds go only to members who consented (`Member.email_consent`) and have not
    # unsubscribed from the kind; transactional kinds go to every member with an address
    # (unless the address is suppressed by a bounce or a complaint).
    marketing: bool
    # On for a new program (`EmailSettings.enabled_kinds`'s default).
    default_on: bool
    # "member": the member's address; "admin": the program's admin address (`EmailSettings.admin_email`).
    to: str = "member"
    description: str = ""


KINDS: dict[str, KindInfo] = {
    info.kind.value: info
    for info in [
        KindInfo(EmailKind.WELCOME, marketing=False, default_on=True, description="A member enrols."),
        KindInfo(
            EmailKind.POINTS_EARNED,
            marketing=False,
            default_on=True,
            description="An activity earns points (one message per activity, all its rules summed).",
        ),
        KindInfo(
            EmailKind.POINTS_ADDED,
            marketing=False,
            default_on=True,
            description='Staff add points and tick "tell the member".',
        ),
        KindInfo(
            EmailKind.POINTS_REMOVED,
            marketing=False,
            default_on=True,
            description='Staff remove points and tick "tell the member".',
        ),
        KindInfo(
            EmailKind.REWARD_REDEEMED,
            marketing=False,
            default_on=True,
            description="A member redeems a reward: the coupon code and how to use it.",
        ),
        KindInfo(
            EmailKind.REWARD_REDEEMED_ADMIN,
            marketing=False,
            default_on=False,
            to="admin",
            description="A copy of each redemption to the program's admin address.",
        ),
        KindInfo(
            EmailKind.POINTS_EXPIRING,
            marketing=False,
            default_on=True,
            description="Points expire in N days (per program), and a last chance the day before.",
        ),
        KindInfo(
            EmailKind.POINTS_REMINDER,
            marketing=True,
            default_on=True,
            description="A monthly or quarterly statement to members with a balance.",
        ),
        KindInfo(
            EmailKind.REWARD_WITHIN_REACH,
            marketing=True,
            default_on=True,
            description="The balance first reaches the cost of a reward the member can take.",
        ),
        KindInfo(EmailKind.TIER_UPGRADED, marketing=False, default_on=True, description="A member moves up a tier."),
        KindInfo(
            EmailKind.TIER_DOWNGRADED, marketing=False, default_on=True, description="A member moves down a tier."
        ),
        KindInfo(
            EmailKind.TIER_AT_RISK,
            marketing=True,
            default_on=True,
            description="N days before the next evaluation would move the member down.",
        ),
        KindInfo(EmailKind.BIRTHDAY, marketing=True, default_on=True, description="The member's birthday."),
        KindInfo(
            EmailKind.REFERRAL_REWARDED,
            marketing=False,
            default_on=True,
            description="A referral is rewarded (to the referrer and to the friend).",
        ),
        KindInfo(
            EmailKind.CARD_CLAIMED,
            marketing=False,
            default_on=True,
            description="A member claims a card with its number and PIN.",
        ),
        KindInfo(
            EmailKind.LOGIN_LINK,
            marketing=False,
            default_on=True,
            description="The customer portal's one-time login link.",
        ),
        KindInfo(
            EmailKind.DELETION_CONFIRMED,
            marketing=False,
            default_on=True,
            description=(
                "Staff confirmed a member's request to delete their data. Written and addressed when staff "
                "confirm, just before the member is anonymised; the address is erased once it is sent."
            ),
        ),
        KindInfo(
            EmailKind.DELETION_DECLINED,
            marketing=False,
            default_on=True,
            description="Staff declined a member's request to delete their data: the reason they gave.",
        ),
        KindInfo(
            EmailKind.CUSTOM,
            marketing=True,
            default_on=True,
            description="An automation's email action (transactional if the automation says so).",
        ),
        KindInfo(
            EmailKind.BUDGET_THRESHOLD,
            marketing=False,
            default_on=True,
            to="admin",
            description=(
                "A budget of an earning rule, an automation or the program reaches 80 % or 100 % of a limit "
                "(once per budget, period and threshold; docs/budgets.md)."
            ),
        ),
    ]
}

# Kinds a merchant cannot switch off: without the login link a member cannot log in; the answer
# to a request to delete one's data is owed to the member (GDPR art. 12).
ALWAYS_ON = frozenset(
    {EmailKind.LOGIN_LINK.value, EmailKind.DELETION_CONFIRMED.value, EmailKind.DELETION_DECLINED.value}
)
# Kinds rendered and addressed when queued, not when sent: the member's data is erased right
# after (`emails.deletion_decision_queue`). The outbox row keeps the address and the rendering
# until the message is sent (or fails for good), then blanks them.
CAPTURED = frozenset({EmailKind.DELETION_CONFIRMED.value})


def default_enabled_kinds() -> list[str]:
    return [k for k, info in KINDS.items() if info.default_on]


# --------------------------------------------------------------------------------------------
# Variables. Every kind offers `member`, `program` and `links`; each kind adds its own.
# A name maps to its fields; an empty tuple is a plain value; a name ending in "[]" in
# LIST_FIELDS is a list of dicts with those fields (used in {% for %}).

MEMBER_FIELDS = (
    "first_name",
    "last_name",
    "name",
    "email",
    "referral_code",
    "available",
    "pending",
    "lifetime_earned",
    "redeemed",
    "tier",
)
PROGRAM_FIELDS = ("name", "points_name", "currency", "brand_color", "logo_url", "admin_email")
LINKS_FIELDS = ("portal", "unsubscribe", "preferences")
ENTRY_FIELDS = ("points", "reason")
LOT_FIELDS = ("points", "expires_on")
COUPON_FIELDS = ("code", "reward", "value", "valid_until", "how_to_use")
TIER_FIELDS = ("name", "benefits", "multiplier")
REWARD_FIELDS = ("name", "points", "description")
BUDGET_FIELDS = ("what", "name", "scope", "period", "period_label", "limit", "used", "percent")

COMMON: dict[str, tuple[str, ...]] = {"member": MEMBER_FIELDS, "program": PROGRAM_FIELDS, "links": LINKS_FIELDS}

# Fields of the items of list variables (for {% for x in name %} the loop variable offers these).
LIST_FIELDS: dict[str, tuple[str, ...]] = {
    "entries": ENTRY_FIELDS,
    "lots": LOT_FIELDS,
    "rewards": REWARD_FIELDS,
}

VARIABLES: dict[str, dict[str, tuple[str, ...]]] = {
    EmailKind.WELCOME: {"signup_points": ()},
    EmailKind.POINTS_EARNED: {"points": (), "entries": (), "activity": ("type", "order_id", "amount", "occurred_on")},
    EmailKind.POINTS_ADDED: {"points": (), "reason": ()},
    EmailKind.POINTS_REMOVED: {"points": (), "reason": ()},
    EmailKind.REWARD_REDEEMED: {"points": (), "coupon": COUPON_FIELDS},
    # The admin copy is not a member's message (`member` is empty): the redeeming member's facts
    # travel in `customer`.
    EmailKind.REWARD_REDEEMED_ADMIN: {"points": (), "coupon": COUPON_FIELDS, "customer": ("name", "email", "id")},
    EmailKind.POINTS_EXPIRING: {"points": (), "lots": (), "expires_on": (), "last_chance": ()},
    EmailKind.POINTS_REMINDER: {
        "period": (),
        "expiring_soon": (),
        "next_tier": ("name", "points_needed"),
        "rewards": (),
    },
    EmailKind.REWARD_WITHIN_REACH: {"reward": REWARD_FIELDS},
    EmailKind.TIER_UPGRADED: {"tier": TIER_FIELDS, "previous_tier": ("name",)},
    EmailKind.TIER_DOWNGRADED: {"tier": TIER_FIELDS, "previous_tier": ("name",)},
    EmailKind.TIER_AT_RISK: {"tier": TIER_FIELDS, "evaluation_on": (), "needed": (), "lower_tier": ("name",)},
    EmailKind.BIRTHDAY: {"points": ()},
    EmailKind.REFERRAL_REWARDED: {"points": (), "friend": ("first_name",), "role": ()},
    EmailKind.CARD_CLAIMED: {"card": ("number", "last_digits"), "points_moved": ()},
    EmailKind.LOGIN_LINK: {"login_url": (), "valid_minutes": ()},
    EmailKind.DELETION_CONFIRMED: {"requested_on": (), "erased_on": ()},
    EmailKind.DELETION_DECLINED: {"requested_on": (), "reason": ()},
    EmailKind.CUSTOM: {
        "automation": ("name",),
        "points": (),
        "tier": ("name", "benefits"),
        "coupon": COUPON_FIELDS,
        "subject": (),
        "body": (),
    },
    # A staff message (`member` is empty): the budget's facts.
    EmailKind.BUDGET_THRESHOLD: {"budget": BUDGET_FIELDS},
}


def variables_for(kind: str) -> dict[str, tuple[str, ...]]:
    """Every variable a template of `kind` may use (common ones first)."""
    return {**COMMON, **VARIABLES[kind]}
