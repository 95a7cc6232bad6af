"""Switching an automation on, with its audience and cost shown first (docs/automations.md,
"Before switching on").

`activation_preview` (a read: zero writes) answers "what would this automation do if it ran
now": the members it would act on (count and a sample), the points it would award and their
money value, the coupons it would issue and their value, the emails it would queue and the tiers
it would set. The members are chosen by `automations.audience_where`, the very WHERE clause the
run's claim uses (status, enrolment, "not served yet this period", every condition), so the
preview and the run cannot disagree about who is in.

`automation_activate` switches an automation on only when the caller confirms the figures it was
shown: without `confirm` it raises `ConfirmationRequired` carrying the preview; when the audience
or the cost moved beyond `TOLERANCE` since the figures the caller saw, `AudienceChanged` with the
new preview. The switch and its audit row (`StaffAction` "automation_activated") are one
transaction. The admin (`admin_automations`) and the API (`api_automations`) both call it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from loyalty import errors
from loyalty.models import Member, Program, StaffAction
from loyalty.services.audit import staff_action_record
from rewards.models import Reward
from rewards.selectors import reward_refusal
from rewards.services import gift_points
from tiers.models import Tier

from . import automations
from .models import Automation

SAMPLE_SIZE = 10
# A confirmation stands while each figure (members, points, coupons, emails, tiers) is within
# 5 % of what the confirming person saw (rounded down: a change of 1 in an audience of 10 re-asks).
TOLERANCE = Decimal("0.05")
FIGURES = ("members", "points", "coupons", "emails", "tiers")
CENT = Decimal("0.01")


class ConfirmationRequired(errors.Conflict):
    """Switching on needs an explicit confirmation of the preview (in `details`)."""

    code = "confirmation_required"


class AudienceChanged(errors.Conflict):
    """The audience or the cost moved beyond the tolerance since the confirmed figures."""

    code = "audience_changed"


@dataclass
class ActivationPreview:
    """What the automation would do if it ran now. Money values are None when unknown (no
    point value set for the program, a percent-off coupon whose value depends on the order)."""

    automation_id: int | None
    program_id: int
    automation: str
    is_active: bool
    trigger: str
    acts_now: bool  # daily automations act at the next run; event ones only on events
    as_of: dt.datetime
    period_key: str
    members: int
    sample: list[dict[str, Any]] = field(default_factory=list)
    currency: str = ""
    points_each: int = 0
    points: int = 0
    points_value: Decimal | None = None
    reward_id: int | None = None
    reward: str = ""
    coupons: int = 0
    coupon_value_each: Decimal | None = None
    coupons_value: Decimal | None = None
    coupon_note: str = ""
    emails: int = 0
    email_note: str = ""
    tier: str = ""
    tiers: int = 0

    def figures(self) -> dict[str, int]:
        """The figures a confirmation refers to (`automation_activate(seen=...)`)."""
        return {name: int(getattr(self, name)) for name in FIGURES}

    def sentence(self) -> str:
        """One sentence naming the audience and the cost, for the confirmation."""
        if self.members == 0:
            return "No member would be acted on now: switching it on gives nothing at once."
        members = "1 member" if self.members == 1 else f"{self.members:,} members"
        what: list[str] = []
        if self.points:
            value = f" (worth {self.points_value:,.2f} {self.currency})" if self.points_value else ""
            what.append(f"give {self.points:,} points{value} to {members}")
        else:
            what.append(f"act on {members}")
        if self.coupons:
            value = f" worth {self.coupons_value:,.2f} {self.currency}" if self.coupons_value is not None else ""
            what.append(f"issue {self.coupons:,} coupons{value}")
        if self.tiers:
            what.append(f"set the tier {self.tier} for {self.tiers:,} of them")
        if self.emails:
            what.append(f"queue {self.emails:,} emails")
        actions = ", ".join(what[:-1]) + " and " + what[-1] if len(what) > 1 else what[0]
        if self.acts_now:
            return f"This will {actions} at the next daily run."
        each = [f"{self.points_each:,} points"] if self.points_each else []
        if self.coupons:
            each.append("a coupon")
        if self.tiers:
            each.append(f"the tier {self.tier}")
        gives = " and ".join(each) or "its actions"
        return (
            f"{members} meet its conditions now. Switching it on gives nothing at once: each "
            f"{self.trigger_words()} of one of them gives {gives}, once per period "
            f"(up to {self.points:,} points for these members)."
        )

    def trigger_words(self) -> str:
        return {
            Automation.Trigger.ACTIVITY: "activity",
            Automation.Trigger.TIER_CHANGED: "tier change",
            Automation.Trigger.ENROLLED: "enrolment",
        }.get(self.trigger, "event")  # type: ignore[call-overload]

    def as_data(self) -> dict[str, Any]:
        """JSON-able, money as decimal strings (the API's and the error details' format)."""

        def money(value: Decimal | None) -> str | None:
            return None if value is None else str(value.quantize(CENT))

        return {
            "automation_id": self.automation_id,
            "automation": self.automation,
            "is_active": self.is_active,
            "trigger": self.trigger,
            "acts_now": self.acts_now,
            "as_of": self.as_of.isoformat(),
            "period_key": self.period_key,
            "members": self.members,
            "sample": self.sample,
            "currency": self.currency,
            "points_each": self.points_each,
            "points": self.points,
            "points_value": money(self.points_value),
            "reward_id": self.reward_id,
            "reward": self.reward,
            "coupons": self.coupons,
            "coupon_value_each": money(self.coupon_value_each),
            "coupons_value": money(self.coupons_value),
            "coupon_note": self.coupon_note,
            "emails": self.emails,
            "email_note": self.email_note,
            "tier": self.tier,
            "tiers": self.tiers,
            "figures": self.figures(),
            "sentence": self.sentence(),
        }


def coupon_money_value(*, reward: Reward, program: Program) -> Decimal | None:
    """What one gift coupon of `reward` is worth in the program's currency: money off its
    amount; points as money off the value of its gift points (as `rewards.services.reward_gift`
    gives it); any other kind its price in points times the program's point value, when both
    are set. None: unknown (e.g. percent off without a points price or point value)."""
    if reward.kind == Reward.Kind.AMOUNT_OFF and reward.value is not None:
        return reward.value.quantize(CENT)
    if reward.is_points_for_amount:
        return (Decimal(gift_points(reward)) * (reward.value or Decimal(0))).quantize(CENT, rounding=ROUND_FLOOR)
    if reward.cost_points and program.point_value:
        return (Decimal(reward.cost_points) * program.point_value).quantize(CENT)
    return None


def _audience_sql(automation: Automation, tier_ids: list[int]) -> str:
    """One statement over the audience: its size, how many would get the email, how many the
    tier would be set for (`automations._set_tier`'s rule: never lower a member, keep a manual
    tier that already runs at least as long), and the first members by id. The audience is
    `automations.audience_where`, unchanged."""
    where = automations.audience_where(automation, tier_ids)
    return (
        f"WITH audience AS (SELECT m.id, m.email, m.email_consent FROM loyalty_member m WHERE {where}) "
        "SELECT count(*), "
        "count(*) FILTER (WHERE a.email <> '' AND (%(transactional)s OR a.email_consent)), "
        "count(*) FILTER (WHERE %(set_tier)s::bigint IS NOT NULL "
        "AND NOT COALESCE(t.position > %(set_tier_position)s, false) "
        "AND NOT COALESCE(mt.tier_id = %(set_tier)s AND mt.manual_until >= %(set_tier_until)s, false)), "
        "(SELECT array_agg(s.id ORDER BY s.id) FROM (SELECT id FROM audience ORDER BY id LIMIT %(sample)s) s) "
        "FROM audience a "
        "LEFT JOIN tiers_membertier mt ON mt.member_id = a.id LEFT JOIN tiers_tier t ON t.id = mt.tier_id"
    )


def activation_preview(
    *,
    automation: Automation,
    now: dt.datetime | None = None,
    tier_ids: list[int] | None = None,
    sample_size: int = SAMPLE_SIZE,
) -> ActivationPreview:
    """The audience and cost of `automation` if it ran now. Zero writes: 1 statement for the
    audience (the claim's WHERE clause, without the claim), 1 for the sample's members, up to 2
    for the reward and the tier. `automation` may be unsaved (a form's instance): then pass
    `tier_ids` (its tier condition); otherwise its saved tiers are read."""
    now = now or timezone.now()
    if timezone.is_naive(now):
        raise errors.InvalidInput("now must be timezone-aware.", field="now")
    program: Program = automation.program
    if tier_ids is None:
        tier_ids = list(automation.tiers.values_list("pk", flat=True)) if automation.pk else []
    key = automations.period_key(automation=automation, program=program, now=now)
    set_tier: Tier | None = automation.set_tier if automation.set_tier_id is not None else None
    until = now + dt.timedelta(days=automation.set_tier_days or automations.DEFAULT_SET_TIER_DAYS)
    params = {
        **automations.audience_params(automation=automation, program=program, key=key, now=now, tier_ids=tier_ids),
        "transactional": automation.email_transactional,
        "set_tier": set_tier.pk if set_tier else None,
        "set_tier_position": set_tier.position if set_tier else 0,
        "set_tier_until": until,
        "sample": sample_size,
    }
    with connection.cursor() as cursor:
        cursor.execute(_audience_sql(automation, tier_ids), params)
        members, with_email, tiers_set, sample_ids = cursor.fetchone()
    sample_ids = sample_ids or []
    by_id = Member.objects.only("id", "first_name", "last_name", "email", "external_id").in_bulk(sample_ids)
    sample = [
        {
            "id": m.pk,
            "name": f"{m.first_name} {m.last_name}".strip(),
            "email": m.email,
            "external_id": m.external_id or "",
        }
        for m in (by_id[i] for i in sample_ids if i in by_id)
    ]
    preview = ActivationPreview(
        automation_id=automation.pk,
        program_id=program.pk,
        automation=automation.name,
        is_active=bool(automation.is_active),
        trigger=automation.trigger,
        acts_now=automation.trigger == Automation.Trigger.DAILY,
        as_of=now,
        period_key=key,
        members=members,
        sample=sample,
        currency=program.currency,
    )
    if automation.award_points:
        preview.points_each = automation.award_points
        preview.points = automation.award_points * members
        if program.point_value:
            preview.points_value = (Decimal(preview.points) * program.point_value).quantize(CENT)
    coupons_refused = False
    if automation.reward_id is not None:
        preview.reward_id = automation.reward_id
        reward = Reward.objects.filter(pk=automation.reward_id, program=program).select_related("min_tier").first()
        if reward is None:
            preview.coupon_note = "The reward does not exist in this program: no coupon would be issued."
            coupons_refused = True
        else:
            preview.reward = reward.name
            refusal = reward_refusal(reward=reward, member=None, now=now)
            if refusal is not None:
                preview.coupon_note = f"{refusal.message} No coupon would be issued."
                coupons_refused = True
            else:
                preview.coupons = members
                if reward.stock is not None and reward.stock - reward.issued_count < members:
                    preview.coupons = max(reward.stock - reward.issued_count, 0)
                    preview.coupon_note = (
                        f"Only {preview.coupons:,} left in stock: the other members would get no coupon."
                    )
                preview.coupon_value_each = coupon_money_value(reward=reward, program=program)
                if preview.coupon_value_each is not None:
                    preview.coupons_value = preview.coupon_value_each * preview.coupons
                elif not preview.coupon_note:
                    preview.coupon_note = "The coupons' money value is unknown (it depends on the order)."
    wants_email = bool(automation.email_subject.strip() and automation.email_body.strip())
    if wants_email:
        needs_coupon = "coupon" in automation.email_subject + automation.email_body
        if needs_coupon and coupons_refused:
            preview.email_note = "The email shows the coupon, which would be refused: no email."
        else:
            preview.emails = with_email
            preview.email_note = (
                "Members with an email address"
                + ("" if automation.email_transactional else " who consented to marketing")
                + " (at most: the program's automation email must be on)."
            )
    if set_tier is not None:
        preview.tier = set_tier.name
        preview.tiers = tiers_set
    return preview


def figures_changed(*, seen: dict[str, int], now: dict[str, int]) -> list[str]:
    """The figures that moved beyond `TOLERANCE` from what was seen (empty: the confirmation
    stands). A figure missing from `seen` counts as 0."""
    moved = []
    for name in FIGURES:
        before, after = int(seen.get(name, 0) or 0), int(now.get(name, 0))
        if abs(after - before) > int(Decimal(before) * TOLERANCE):
            moved.append(name)
    return moved


@dataclass
class ActivationResult:
    automation: Automation
    preview: ActivationPreview
    activated: bool  # False: it was on already (nothing changed, nothing audited)


@transaction.atomic(durable=True)
def automation_activate(
    *,
    automation_id: int,
    actor: Any = None,
    api_key: Any = None,
    confirm: bool,
    seen: dict[str, int] | None = None,
    now: dt.datetime | None = None,
) -> ActivationResult:
    """Switch an automation on after its audience and cost were confirmed.

    Locks the automation row, computes the preview as of `now`, and refuses with
    `ConfirmationRequired` (the preview in `details`) unless `confirm`; with `seen` (the figures
    the confirming person was shown), refuses with `AudienceChanged` when one moved beyond the
    tolerance. Switching on an automation that is on already changes nothing. Audited as
    "automation_activated" by `actor` (a staff user) or `api_key`, with the figures."""
    now = now or timezone.now()
    automation = (
        Automation.objects.select_for_update(of=("self",))
        .select_related("program", "set_tier")
        .filter(pk=automation_id)
        .first()
    )
    if automation is None:
        raise errors.NotFound("No such automation.", automation_id=automation_id)
    preview = activation_preview(automation=automation, now=now)
    if automation.is_active:
        return ActivationResult(automation=automation, preview=preview, activated=False)
    if not confirm:
        raise ConfirmationRequired(
            f"Confirm switching on “{automation.name}”: {preview.sentence()}", preview=preview.as_data()
        )
    if seen is not None:
        moved = figures_changed(seen=seen, now=preview.figures())
        if moved:
            raise AudienceChanged(
                f"The audience or cost of “{automation.name}” changed since it was shown ({', '.join(moved)}): "
                f"{preview.sentence()} Confirm again.",
                preview=preview.as_data(),
                changed=moved,
                seen=seen,
            )
    automation.is_active = True
    automation.save(update_fields=["is_active"])  # post_save: the event automations' memo is forgotten
    details = {"automation": automation.pk, "name": automation.name, **preview.figures()}
    details["points_value"] = None if preview.points_value is None else str(preview.points_value)
    details["coupons_value"] = None if preview.coupons_value is None else str(preview.coupons_value)
    details["sentence"] = preview.sentence()
    if seen is not None:
        details["seen"] = {name: int(seen.get(name, 0) or 0) for name in FIGURES}
    staff_action_record(
        actor=actor,
        api_key=api_key,
        action=StaffAction.Action.AUTOMATION_ACTIVATE,
        program=automation.program,
        details=details,
        now=now,
    )
    return ActivationResult(automation=automation, preview=preview, activated=True)


@transaction.atomic(durable=True)
def automation_deactivate(
    *, automation_id: int, actor: Any = None, api_key: Any = None, now: dt.datetime | None = None
) -> bool:
    """Switch an automation off (no confirmation: stopping gives nothing). Audited as
    "automation_stopped". False: it was off already (nothing changed, nothing audited)."""
    now = now or timezone.now()
    automation = Automation.objects.select_for_update(of=("self",)).select_related("program").filter(pk=automation_id)
    found = automation.first()
    if found is None:
        raise errors.NotFound("No such automation.", automation_id=automation_id)
    if not found.is_active:
        return False
    found.is_active = False
    found.save(update_fields=["is_active"])
    staff_action_record(
        actor=actor,
        api_key=api_key,
        action=StaffAction.Action.AUTOMATION_DEACTIVATE,
        program=found.program,
        details={"automation": found.pk, "name": found.name},
        now=now,
    )
    return True
