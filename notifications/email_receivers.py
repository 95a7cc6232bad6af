"""Which events queue which member emails (docs/emails.md, "When each email is sent").

The receivers listen to the `*_in_transaction` signals of the lower apps, so each message row
is written in the transaction of its event (`emails.message_queue`, or one set-based statement
of `email_queue`): one short statement per message (or per batch), and nothing at all when the
program does not send the kind (settings cached per process). They must not swallow database
errors: an outbox row that cannot be written rolls its event back ("nothing lost").
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from anymail.signals import tracking as anymail_tracking
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from cards.importing import members_imported_in_transaction
from cards.signals import card_claimed_in_transaction
from loyalty.models import LedgerEntry
from loyalty.signals import (
    deletion_request_decided_in_transaction,
    member_anonymised_in_transaction,
    member_enrolled_in_transaction,
    points_posted_in_transaction,
)
from rewards.models import Reward
from rewards.signals import reward_redeemed_in_transaction
from tiers.signals import tier_changed_in_transaction
from workflows.automations import email_member_fields
from workflows.signals import (
    automation_email_in_transaction,
    birthday_awarded_in_transaction,
    budget_threshold_in_transaction,
    referral_rewarded_in_transaction,
)

from . import email_context, email_queue, email_render, emails
from .email_kinds import EmailKind

Kind = LedgerEntry.Kind
logger = logging.getLogger(__name__)


@receiver(member_enrolled_in_transaction, dispatch_uid="notifications.email_welcome")
def on_member_enrolled(sender: Any, *, program: Any, member: Any, channel: str, **kwargs: Any) -> None:
    emails.message_queue(program_id=program.id, member_id=member.id, kind=EmailKind.WELCOME, source="enrolled", data={})


@receiver(member_anonymised_in_transaction, dispatch_uid="notifications.email_member_anonymised")
def on_member_anonymised(sender: Any, *, member: Any, now: dt.datetime, **kwargs: Any) -> None:
    """Blank the anonymised member's addresses in the outbox; suppress what is still queued."""
    emails.member_messages_erase(member_id=member.pk, now=now)


@receiver(deletion_request_decided_in_transaction, dispatch_uid="notifications.email_deletion_decided")
def on_deletion_request_decided(
    sender: Any, *, program: Any, member: Any, request: Any, confirm: bool, note: str, now: dt.datetime, **kwargs: Any
) -> None:
    """Tell the member what staff decided; a confirmation is captured before the anonymisation."""
    emails.deletion_decision_queue(
        program=program,
        member=member,
        request_id=request.pk,
        requested_at=request.requested_at,
        confirm=confirm,
        note=note,
        now=now,
    )


@receiver(points_posted_in_transaction, dispatch_uid="notifications.email_points")
def on_points_posted(
    sender: Any, *, program: Any, member_id: int, entries: list[LedgerEntry], context: dict[str, Any], **kwargs: Any
) -> None:
    """What a posting tells the member:

    - an activity's earn entries: one points_earned message per activity, summing them (not
      when another event's email announces them: `context["announced_by"]`, the birthday job
      and referrals);
    - a staff adjustment with "tell the member" (`context["notify_member"]`): points_added or
      points_removed, with the reason;
    - the available balance crossing the cost of a reward the member can take:
      reward_within_reach (`email_queue.within_reach_messages_queue`; no statement when no
      cost was crossed)."""
    if context.get("notify_member"):
        for entry in entries:
            if entry.kind == Kind.ADJUST and entry.points:
                emails.message_queue(
                    program_id=program.id,
                    member_id=member_id,
                    kind=EmailKind.POINTS_ADDED if entry.points > 0 else EmailKind.POINTS_REMOVED,
                    source=f"adjust:{entry.id}",
                    data={"points": abs(entry.points), "reason": context.get("reason") or entry.reason},
                    now=entry.created_at,
                )
    balance = kwargs.get("balance")
    if balance is not None and entries:
        # The available balance before the posting: released credits and debits moved it (a
        # pending lot does not count until it is released).
        moved = sum(e.points for e in entries if e.points < 0 or e.released_at is not None)
        if moved > 0:
            email_queue.within_reach_messages_queue(
                program=program,
                member_id=member_id,
                before=balance.available - moved,
                after=balance.available,
                first_entry_id=min(e.id for e in entries),
                now=entries[0].created_at,
            )
    if context.get("announced_by"):
        return
    by_activity: dict[int, list[LedgerEntry]] = {}
    for entry in entries:
        if entry.kind == Kind.EARN and entry.activity_id is not None and entry.points > 0:
            by_activity.setdefault(entry.activity_id, []).append(entry)
    for activity_id, earned in by_activity.items():
        emails.message_queue(
            program_id=program.id,
            member_id=member_id,
            kind=EmailKind.POINTS_EARNED,
            source=f"activity:{activity_id}",
            data={
                "points": sum(e.points for e in earned),
                "entries": [{"points": e.points, "reason": e.reason} for e in earned],
                "activity_id": activity_id,
            },
        )


@email_context.enricher(EmailKind.POINTS_EARNED)
def _earned_activity(facts: dict[str, Any], program: Any, member: Any) -> dict[str, Any]:
    """The activity behind a points_earned message (read when the message is sent)."""
    from loyalty.models import Activity

    if not facts.get("activity_id"):  # a preview's sample facts carry `activity` already
        return facts
    activity = Activity.objects.filter(pk=facts["activity_id"]).first()
    if activity is not None:
        facts["activity"] = {
            "type": activity.type,
            "order_id": activity.order_id,
            "amount": activity.amount,
            "occurred_on": program.local_date(activity.occurred_at).isoformat(),
        }
    return facts


# --------------------------------------------------------------------------------------------
# Redemptions


@receiver(reward_redeemed_in_transaction, dispatch_uid="notifications.email_reward_redeemed")
def on_reward_redeemed(sender: Any, *, program: Any, redemption: Any, member_id: int, **kwargs: Any) -> None:
    """reward_redeemed to the member and the reward_redeemed_admin copy: one statement."""
    email_queue.redemption_messages_queue(program=program, redemption=redemption, member_id=member_id)


# How to use a coupon, by reward kind and language (a merchant who wants other words edits the
# template). Read at send time, in the message's language.
HOW_TO_USE = {
    "en": {
        "online": "Enter the code at checkout, or show it at the till.",
        "free_product": "Show the code at the till, or enter it at checkout, to get the product.",
        "experience": "Show the code to claim your reward.",
        "partner": "Give the code to our partner to claim your reward.",
    },
    "fr": {
        "online": "Saisissez le code au moment du paiement, ou présentez-le en caisse.",
        "free_product": "Présentez le code en caisse, ou saisissez-le au paiement, pour obtenir le produit.",
        "experience": "Présentez le code pour profiter de votre récompense.",
        "partner": "Donnez le code à notre partenaire pour profiter de votre récompense.",
    },
}


def _how_to_use(kind: str, language: str) -> str:
    words = HOW_TO_USE.get(language, HOW_TO_USE[email_render.DEFAULT_LANGUAGE])
    return words.get(kind, words["online"])


@email_context.enricher(EmailKind.REWARD_REDEEMED)
@email_context.enricher(EmailKind.REWARD_REDEEMED_ADMIN)
def _coupon_how_to_use(facts: dict[str, Any], program: Any, member: Any) -> dict[str, Any]:
    """The coupon's `how_to_use`, in the message's language (no query)."""
    coupon = facts.get("coupon")
    if isinstance(coupon, dict) and not coupon.get("how_to_use"):
        language = emails.language_of(program, member)
        facts["coupon"] = {**coupon, "how_to_use": _how_to_use(coupon.get("reward_kind", ""), language)}
    if isinstance(coupon, dict):
        facts["coupon"] = {**facts["coupon"], "value": _value_with_unit(coupon, program, member)}
    return facts


PERCENT_KINDS = ("percent_off", "product_discount")


def _value_with_unit(coupon: dict[str, Any], program: Any, member: Any) -> str:
    """A coupon's value as a member reads it: "10 %" for a percentage, "5.00 EUR" (or "5,00 EUR"
    in French) for money; "" without a value."""
    value = coupon.get("value")
    if value in (None, ""):
        return ""
    if isinstance(value, str) and not value.replace(".", "", 1).isdigit():
        return value  # already a display string
    amount = Decimal(str(value))
    if coupon.get("reward_kind") in PERCENT_KINDS:
        return f"{amount.normalize():f} %"
    text = f"{amount.quantize(Decimal('0.01'))}"
    if emails.language_of(program, member) == "fr":
        text = text.replace(".", ",")
    return f"{text} {program.currency}"


post_save.connect(email_queue.reward_costs_forget, sender=Reward, dispatch_uid="notifications.reward_costs_saved")
post_delete.connect(email_queue.reward_costs_forget, sender=Reward, dispatch_uid="notifications.reward_costs_deleted")


# --------------------------------------------------------------------------------------------
# Tiers, cards, imports


@receiver(tier_changed_in_transaction, dispatch_uid="notifications.email_tier_changed")
def on_tier_changed(
    sender: Any, *, program: Any, changes: list[Any], notify_member: bool = True, **kwargs: Any
) -> None:
    """tier_upgraded / tier_downgraded: one statement for the whole batch of changes."""
    if notify_member and changes:
        email_queue.tier_messages_queue(program=program, change_ids=[c.id for c in changes], now=changes[0].at)


@receiver(card_claimed_in_transaction, dispatch_uid="notifications.email_card_claimed")
def on_card_claimed(sender: Any, *, program: Any, member: Any, card: Any, points_moved: int, **kwargs: Any) -> None:
    last_digits = card.number[-4:]
    emails.message_queue(
        program_id=program.id,
        member_id=member.id,
        kind=EmailKind.CARD_CLAIMED,
        source=f"card:{card.pk}:claimed",
        # Only the last digits travel: the whole number and the PIN identify the card.
        data={"card": {"number": f"•••• {last_digits}", "last_digits": last_digits}, "points_moved": points_moved},
    )


@receiver(members_imported_in_transaction, dispatch_uid="notifications.email_members_imported")
def on_members_imported(sender: Any, *, program: Any, member_ids: list[int], **kwargs: Any) -> None:
    """Welcome the imported members only when the program asks for it: one statement."""
    email_queue.import_welcome_queue(program=program, member_ids=member_ids)


# --------------------------------------------------------------------------------------------
# Workflows: birthdays, referrals, automations


@receiver(birthday_awarded_in_transaction, dispatch_uid="notifications.email_birthday")
def on_birthday_awarded(
    sender: Any, *, program: Any, member_id: int, activity: Any, points: int, day: dt.date, **kwargs: Any
) -> None:
    emails.message_queue(
        program_id=program.id,
        member_id=member_id,
        kind=EmailKind.BIRTHDAY,
        source=f"birthday:{day.year}",
        data={"points": points, "activity_id": activity.pk, "birthday_on": day.isoformat()},
    )


@receiver(referral_rewarded_in_transaction, dispatch_uid="notifications.email_referral")
def on_referral_rewarded(
    sender: Any,
    *,
    program: Any,
    referral: Any,
    friend: Any,
    referrer: Any,
    friend_points: int,
    referrer_points: int,
    **kwargs: Any,
) -> None:
    """referral_rewarded to each side that got points; `friend` is the other member (first
    name only), `role` says which side the reader is on."""
    for member, other, points, role in (
        (friend, referrer, friend_points, "friend"),
        (referrer, friend, referrer_points, "referrer"),
    ):
        if points > 0:
            emails.message_queue(
                program_id=program.id,
                member_id=member.pk,
                kind=EmailKind.REFERRAL_REWARDED,
                source=f"referral:{referral.pk}",
                data={"points": points, "role": role, "friend": {"first_name": other.first_name}},
            )


@receiver(budget_threshold_in_transaction, dispatch_uid="notifications.email_budget_threshold")
def on_budget_threshold(sender: Any, *, program: Any, budget: dict[str, Any], now: dt.datetime, **kwargs: Any) -> None:
    """budget_threshold to the program's admin address (none set: nothing is written), once per
    budget, period and percent (the source)."""
    source = f"budget:{budget['scope']}:{budget['id']}:{budget['period']}:{budget['percent']}"
    emails.message_queue(
        program_id=program.id,
        member_id=None,
        kind=EmailKind.BUDGET_THRESHOLD,
        source=source,
        data={"budget": budget},
        now=now,
    )


@receiver(automation_email_in_transaction, dispatch_uid="notifications.email_automation")
def on_automation_email(
    sender: Any, *, program: Any, automation: Any, member: Any, period_key: str, facts: dict[str, Any], **kwargs: Any
) -> bool:
    """An automation's email becomes a `custom` message: its subject and body (checked when the
    automation was saved, workflows.automations.email_template_problems) are rendered now in
    the emails' sandbox with the firing's facts, and the result travels as the message's
    `subject` and `body`, which the custom template lays out. Marketing unless the automation
    is marked transactional. Returns whether a row was written."""
    if not emails.program_sends(program.id, EmailKind.CUSTOM):
        return False
    context = {
        **facts,
        "member": email_member_fields(member),
        "program": {"name": program.name, "points_name": program.points_name, "currency": program.currency},
    }
    # Plain text (autoescape off): the custom template's HTML escapes the body when it prints it.
    subject = " ".join(email_render.render_string(automation.email_subject, context, autoescape=False).split())
    body = email_render.render_string(automation.email_body, context, autoescape=False).strip()
    transactional = bool(automation.email_transactional)
    written = emails.message_queue(
        program_id=program.id,
        member_id=member.pk,
        kind=EmailKind.CUSTOM,
        source=f"automation:{automation.pk}:{period_key}",
        data={**facts, "subject": subject, "body": body, "transactional": transactional},
        transactional=transactional,
    )
    return written is not None


@receiver(anymail_tracking, dispatch_uid="notifications.email_tracking")
def on_esp_tracking(sender: Any, *, event: Any, esp_name: str, **kwargs: Any) -> None:
    """The ESP's tracking webhook (anymail checked its signature): update the message's status;
    a hard bounce or a complaint suppresses the address (`emails.message_tracked`)."""
    outcome = emails.message_tracked(
        event_type=event.event_type,
        outbox_id=(event.metadata or {}).get("outbox_id"),
        esp_message_id=event.message_id or "",
        recipient=event.recipient or "",
        description=event.description or event.mta_response or "",
        at=event.timestamp,
    )
    if outcome.message_id is None and event.event_type in emails.TRACKING_STATUS:
        logger.info("%s %s event for an unknown message %s", esp_name, event.event_type, event.message_id)
