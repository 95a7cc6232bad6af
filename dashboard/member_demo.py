"""The member page's part of `manage.py load_demo` (on `demo_loaded`, after the other apps):
one member with a whole story to show on /admin/dashboard/members/<id>/ — a digital card and
its replacement, orders (one partly refunded), a referral, coupons (one cancelled), emails,
staff notes, an audit trail, and an adjustment waiting for a second staff member's approval.
Everything goes through the services, dated as it happens; idempotent (skipped when the
member exists)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from cards import services as card_services
from cards.models import Card
from loyalty import services as ledger
from loyalty.models import Member, MemberNote, Program, StaffAction
from rewards import services as reward_services
from rewards.models import Reward
from workflows import services as workflow_services

STORY_ID = "demo-story-camille"
MANAGER = "maria.manager"


def _demo_manager() -> Any:
    """A second staff user (a Manager) who asks for the big adjustment the demo user approves."""
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=MANAGER, defaults={"first_name": "Maria", "last_name": "Manager", "is_staff": True}
    )
    if created:
        user.set_unusable_password()
        user.save()
    group = Group.objects.filter(name__iexact="manager").order_by("name").first()
    if group is not None:
        user.groups.add(group)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="loyalty", codename="adjust_points"))
    return user


def member_story_load(*, program: Program, actor: Any, now: dt.datetime) -> str:
    if Member.objects.filter(program=program, external_id=STORY_ID).exists():
        return ""
    start = now - dt.timedelta(days=75)
    referrer = Member.objects.filter(program=program, status=Member.Status.ACTIVE).order_by("id").first()
    member, _ = ledger.member_enrol(
        program=program,
        external_id=STORY_ID,
        email="camille.durand@example.com",
        first_name="Camille",
        last_name="Durand",
        birthday=dt.date(1990, 4, 12),
        channel=Member.Channel.POS,
        email_consent=True,
        referred_by=referrer,
        now=start,
    )
    card = Card.objects.filter(member=member).first() or card_services.card_issue_digital(member=member, now=start)

    # Orders: three purchases, the second partly refunded.
    for days, order_id, amount in (
        (70, "DEMO-5001", "486.40"),
        (45, "DEMO-5002", "642.00"),
        (20, "DEMO-5003", "258.90"),
    ):
        moment = now - dt.timedelta(days=days)
        workflow_services.activity_report(
            program=program,
            member=member,
            type="purchase",
            occurred_at=moment,
            order_id=order_id,
            amount=Decimal(amount),
            currency=program.currency,
            channel="pos",
            now=moment,
        )
    refund_at = now - dt.timedelta(days=40)
    workflow_services.refund_report(program=program, order_id="DEMO-5002", amount=Decimal("42.00"), now=refund_at)
    _audit(actor, "refund", member, "Returned a grinder", {"order_id": "DEMO-5002", "amount": "42.00"}, refund_at)

    # A friend she referred.
    ledger.member_enrol(
        program=program,
        external_id=f"{STORY_ID}-friend",
        email="theo.durand@example.com",
        first_name="Théo",
        last_name="Durand",
        birthday=dt.date(1994, 11, 3),
        channel=Member.Channel.ONLINE,
        referred_by=member,
        now=now - dt.timedelta(days=15),
    )

    # Staff at work: a lost card replaced, coupons, notes, a goodwill adjustment.
    moment = now - dt.timedelta(days=12)
    new_card = card_services.card_replace(card=card, actor=actor, now=moment)
    _audit(actor, "card_replace", member, "Phone lost", {"old_card": card.number, "new_card": new_card.number}, moment)
    reward = Reward.objects.filter(program=program, is_active=True, cost_points__gt=0).order_by("cost_points").first()
    member.refresh_from_db()
    if reward is not None and member.available >= (reward.cost_points or 0) * 3:
        for days in (9, 8):
            moment = now - dt.timedelta(days=days)
            coupon = reward_services.reward_redeem(program=program, member=member, reward=reward, now=moment).redemption
            _audit(actor, "redeem", member, "", {"reward": reward.name, "coupon": coupon.code}, moment)
        moment = now - dt.timedelta(days=7)
        reward_services.redemption_cancel(
            program=program, code=coupon.code, reason="Chose the wrong reward", now=moment
        )
        _audit(actor, "coupon_cancel", member, "Chose the wrong reward", {"coupon": coupon.code}, moment)
    for days, text in (
        (12, "Called: lost her phone with the digital card. Replaced; balance unchanged."),
        (3, "Prefers to be called after 6 pm. Loyal customer of the Lyon shop."),
    ):
        moment = now - dt.timedelta(days=days)
        note = MemberNote.objects.create(program=program, member=member, author=actor, text=text, created_at=moment)
        _audit(actor, "note", member, "", {"note": note.pk, "text": text}, moment)
    member.refresh_from_db()
    ledger.staff_adjust(
        actor=actor,
        member=member,
        points=50,
        reason="Goodwill: late delivery of order DEMO-5003",
        idempotency_key=f"demo:{STORY_ID}:goodwill",
        confirmed=True,
        now=now - dt.timedelta(days=2),
    )
    # A manager asks for more than the program's approval threshold: it waits for the demo user.
    manager = _demo_manager()
    member.refresh_from_db()
    outcome = ledger.staff_adjust(
        actor=manager,
        member=member,
        points=max((program.adjustment_approval_above or 10_000) + 2_000, 12_000),
        reason="Corporate event: 120 guests' purchases booked on her account",
        idempotency_key=f"demo:{STORY_ID}:approval",
        confirmed=True,
        now=now - dt.timedelta(hours=5),
    )
    pending = f", an adjustment request #{outcome.request.pk} waiting for approval" if outcome.request else ""
    return f"Member page demo: {member} (member #{member.pk}) with a whole story{pending}."


def _audit(actor: Any, action: str, member: Member, reason: str, details: dict[str, Any], at: dt.datetime) -> None:
    ledger.staff_action_record(
        actor=actor,
        action=StaffAction.Action(action),
        program=member.program,
        member=member,
        reason=reason,
        details=details,
        now=at,
    )


def add_demo_member_story(
    sender: Any, *, program: Program, actor: Any, now: Any, stdout: Any = None, **kw: Any
) -> None:
    line = member_story_load(program=program, actor=actor, now=now or timezone.now())
    if line and stdout is not None:
        stdout.write(line)
