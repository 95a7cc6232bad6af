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
