import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from tiers.models import MemberTier, TierChange


@pytest.fixture
def admin_client_(client, staff):
    client.force_login(staff)
    return client


def test_staff_set_a_tier_manually_with_an_end_date_and_a_reason(admin_client_, member, gold, staff):
    until = timezone.localtime(timezone.now() + dt.timedelta(days=10))
    url = reverse("admin:tiers_membertier_set", args=[member.pk])
    assert admin_client_.get(url).status_code == 200
    response = admin_client_.post(
        url, {"tier": gold.pk, "until_0": until.strftime("%Y-%m-%d"), "until_1": "12:00:00", "reason": "Press"}
    )
    assert response.status_code == 302
    state = MemberTier.objects.get(member=member)
    assert state.tier == gold
    assert state.manual_reason == "Press"
    assert TierChange.objects.get(member=member).actor == staff


def test_the_manual_page_refuses_a_missing_reason(admin_client_, member, gold):
    url = reverse("admin:tiers_membertier_set", args=[member.pk])
    response = admin_client_.post(url, {"tier": gold.pk, "until_0": "2099-01-01", "until_1": "12:00:00", "reason": ""})
    assert response.status_code == 200
    assert not MemberTier.objects.filter(member=member).exists()


def test_the_tier_admin_pages_open(admin_client_, tiers):
    for name in ("tiers_tier_changelist", "tiers_membertier_changelist", "tiers_tierchange_changelist"):
        assert admin_client_.get(reverse(f"admin:{name}")).status_code == 200


def tier_form(program, **fields):
    return {
        "program": program.pk,
        "name": "Platinum",
        "position": 3,
        "threshold": "400",
        "multiplier": "1",
        "benefits": "",
        "retention_days": 0,
        "is_active": "on",
        **fields,
    }


def test_the_tier_form_refuses_a_higher_position_with_a_lower_threshold(admin_client_, program, tiers):
    response = admin_client_.post(reverse("admin:tiers_tier_add"), tier_form(program))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["threshold"]
    assert errors == [
        "The threshold 400 is below the threshold of Gold (500.00, position 2): a higher tier must need at "
        "least as much as the tiers below it."
    ]
    assert not program.tiers.filter(name="Platinum").exists()


def test_the_tier_form_refuses_lowering_a_tiers_position_under_a_cheaper_tier(admin_client_, program, tiers):
    gold = tiers[1]
    response = admin_client_.post(
        reverse("admin:tiers_tier_change", args=[gold.pk]), tier_form(program, name="Gold", position=0, threshold="500")
    )
    assert response.status_code == 200
    assert "above the threshold of Silver" in response.context["adminform"].form.errors["threshold"][0]
    gold.refresh_from_db()
    assert gold.position == 2


def test_the_tier_form_saves_a_tier_in_order_and_edits_one_in_place(admin_client_, program, tiers):
    response = admin_client_.post(reverse("admin:tiers_tier_add"), tier_form(program, threshold="900"))
    assert response.status_code == 302
    gold = tiers[1]
    response = admin_client_.post(
        reverse("admin:tiers_tier_change", args=[gold.pk]), tier_form(program, name="Gold", position=2, threshold="600")
    )
    assert response.status_code == 302
    gold.refresh_from_db()
    assert gold.threshold == 600
