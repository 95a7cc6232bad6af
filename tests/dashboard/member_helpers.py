"""Shared set-up of the member page's tests: role users, a member with a story, form tokens."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.utils import timezone

from loyalty import services
from loyalty.models import Activity
from notifications.models import EmailMessage
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory, StaffFactory
from tests.rewards.factories import RewardFactory
from workflows.models import Referral

# What each role may do on the member page (the roles migration grants the real sets).
ROLE_PERMISSIONS = {
    "Owner": [
        "loyalty.view_member",
        "loyalty.change_member",
        "loyalty.adjust_points",
        "loyalty.transfer_points",
        "loyalty.refund_order",
        "loyalty.approve_adjustment",
        "loyalty.view_adjustmentrequest",
        "loyalty.view_staffaction",
        "loyalty.view_membernote",
        "loyalty.add_membernote",
        "cards.change_card",
        "rewards.redeem_for_member",
        "notifications.change_emailmessage",
    ],
    "Manager": [
        "loyalty.view_member",
        "loyalty.change_member",
        "loyalty.adjust_points",
        "loyalty.transfer_points",
        "loyalty.refund_order",
        "loyalty.approve_adjustment",
        "loyalty.view_adjustmentrequest",
        "loyalty.view_staffaction",
        "loyalty.view_membernote",
        "loyalty.add_membernote",
        "cards.change_card",
        "rewards.redeem_for_member",
        "notifications.change_emailmessage",
    ],
    "Support": [
        "loyalty.view_member",
        "loyalty.change_member",
        "loyalty.adjust_points",
        "loyalty.add_membernote",
        "cards.change_card",
        "rewards.redeem_for_member",
    ],
}


def role_user(role: str, username: str | None = None):
    """A staff user in the role's group (created with the permissions above if missing)."""
    group, _ = Group.objects.get_or_create(name=role)
    for code in ROLE_PERMISSIONS[role]:
        app_label, codename = code.split(".")
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    user = StaffFactory(**({"username": username} if username else {}))
    user.set_password("pass-word-1")
    user.save()
    user.groups.add(group)
    return user


def form_token(html: str) -> str:
    match = re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', html)
    assert match, "the page carries a hidden idempotency token"
    return match.group(1)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def earn(member, points: int, **kwargs):
    return services.points_earn(program=member.program, member_id=member.pk, points=points, **kwargs)


def member_with_story(program, staff):
    """A member with a card, an order and a partial refund, a coupon, an email, a referral and a note."""
    member = MemberFactory(program=program, first_name="Léa", last_name="Martin", email="lea.martin@example.com")
    friend = MemberFactory(program=program, first_name="Hugo", last_name="Petit")
    card = CardFactory(member=member)
    now = timezone.now()
    purchase = Activity.objects.create(
        program=program,
        member=member,
        type=Activity.Type.PURCHASE,
        occurred_at=now - dt.timedelta(days=3),
        order_id="ORD-1001",
        amount=Decimal("120.00"),
        currency="EUR",
    )
    earn(member, 1200, activity=purchase, reason="Order ORD-1001")
    services.points_reverse_order(program=program, order_id="ORD-1001", amount=Decimal("20.00"))
    reward = RewardFactory(program=program, name="Free coffee", cost_points=300)
    from rewards.services import reward_redeem

    coupon = reward_redeem(program=program, member=member, reward=reward).redemption
    EmailMessage.objects.update_or_create(
        program=program,
        member=member,
        kind="reward_redeemed",
        source=f"redemption:{coupon.pk}",
        defaults={"status": EmailMessage.Status.DELIVERED, "subject": "Your Free coffee coupon", "created_at": now},
    )
    Referral.objects.create(program=program, referrer=member, friend=friend, created_at=now)
    from loyalty.models import MemberNote

    MemberNote.objects.create(program=program, member=member, author=staff, text="Prefers email.", created_at=now)
    member.refresh_from_db()
    return member, card, coupon, friend
