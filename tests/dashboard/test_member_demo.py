"""The member page's part of the demo: one member with a whole story, an audit trail and an
adjustment waiting for approval; the ledger stays consistent; a second run adds nothing."""

from __future__ import annotations

import pytest
from django.utils import timezone

from dashboard.member_demo import STORY_ID, member_story_load
from loyalty.models import AdjustmentRequest, Member, MemberNote, StaffAction
from loyalty.selectors import ledger_problems
from rewards.models import Redemption
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.rewards.factories import RewardFactory
from workflows.demo import demo_rules_load

pytestmark = pytest.mark.django_db


def test_the_demo_member_has_a_whole_story():
    program = ProgramFactory(pending_days=14)
    MemberFactory(program=program)  # the referrer
    RewardFactory(program=program, name="Free shipping", cost_points=150)
    demo_rules_load(program=program, now=timezone.now())  # the demo's earning rules (1 point per euro...)
    demo = StaffFactory(username="demo", is_superuser=True)

    line = member_story_load(program=program, actor=demo, now=timezone.now())

    member = Member.objects.get(program=program, external_id=STORY_ID)
    assert "Camille Durand" in line
    assert member.cards.count() == 2  # a replaced card and its replacement
    assert member.activities.filter(type="refund").exists()
    assert Redemption.objects.filter(member=member, status="cancelled").exists()
    assert MemberNote.objects.filter(member=member).count() == 2
    assert AdjustmentRequest.objects.get(member=member).status == "pending"
    actions = set(StaffAction.objects.filter(member=member).values_list("action", flat=True))
    assert {"refund", "card_replace", "redeem", "coupon_cancel", "note", "adjust", "adjust_requested"} <= actions
    assert list(ledger_problems()) == []

    assert member_story_load(program=program, actor=demo, now=timezone.now()) == ""
    assert Member.objects.filter(program=program, external_id=STORY_ID).count() == 1
