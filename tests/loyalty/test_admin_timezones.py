"""Staff read and type dates in the program's time zone (loyalty/admin/timezones.py), on the
earning rules, rewards, coupons, ledger entries and the set-tier page."""

import datetime as dt
import re
import zoneinfo
from decimal import Decimal

import pytest
from django.urls import reverse

from loyalty import services as ledger
from rewards import services as reward_services
from rewards.models import Reward
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.rewards.factories import RewardFactory
from tests.tiers.factories import TierFactory
from tests.workflows.factories import EarningRuleFactory
from tiers.models import MemberTier
from workflows.models import EarningRule

pytestmark = pytest.mark.django_db

UTC = dt.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.fixture
def admin_client_(client):
    client.force_login(StaffFactory(is_superuser=True))
    return client


@pytest.fixture
def paris(db):
    return ProgramFactory(timezone="Europe/Paris", expiry_days=365, min_redemption=0)


@pytest.fixture
def tokyo(db):
    return ProgramFactory(timezone="Asia/Tokyo")


def rule_form(program, **fields):
    return {
        "program": program.pk,
        "name": "Summer campaign",
        "trigger": "purchase",
        "is_active": "on",
        "kind": "per_amount",
        "points": "2",
        "multiplier": "1",
        "priority": "0",
        **fields,
    }


def split(page, name):
    """The date and time a split date-time field shows on the rendered page."""
    html = page.content.decode()
    return tuple(
        re.search(rf'name="{name}_{part}"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="{name}_{part}"', html).group(1)
        for part in (0, 1)
    )


def test_a_campaign_window_typed_in_the_form_is_stored_as_program_local_time_and_shown_back(
    admin_client_, paris, tokyo
):
    response = admin_client_.post(
        reverse("admin:workflows_earningrule_add"),
        rule_form(
            paris,
            starts_at_0="2026-07-01",
            starts_at_1="09:00:00",
            ends_at_0="2026-12-01",
            ends_at_1="00:00:00",
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = EarningRule.objects.get()
    assert rule.starts_at == dt.datetime(2026, 7, 1, 7, 0, tzinfo=UTC)  # summer: UTC+2
    assert rule.ends_at == dt.datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # winter: UTC+1
    page = admin_client_.get(reverse("admin:workflows_earningrule_change", args=[rule.pk]))
    form = page.context["adminform"].form
    assert split(page, "starts_at") == ("2026-07-01", "09:00:00")
    assert split(page, "ends_at") == ("2026-12-01", "00:00:00")
    assert "Time zone: Europe/Paris." in form.fields["starts_at"].help_text
    assert "Time zone: Europe/Paris." in page.content.decode()


def test_the_campaign_list_shows_each_rule_in_its_own_program_zone(admin_client_, paris, tokyo):
    moment = dt.datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    EarningRuleFactory(program=paris, name="Paris", starts_at=moment)
    EarningRuleFactory(program=tokyo, name="Tokyo", starts_at=moment)
    page = admin_client_.get(reverse("admin:workflows_earningrule_changelist"))
    cl = page.context["cl"]
    shown = {rule.name: cl.model_admin.starts(rule) for rule in cl.result_list}
    assert shown["Paris"] == "2026-07-01 09:00 CEST"
    assert shown["Tokyo"] == "2026-07-01 16:00 JST"
    assert "2026-07-01 09:00 CEST" in page.content.decode()


def test_a_new_object_with_several_programs_says_which_zone_applies(admin_client_, paris, tokyo):
    page = admin_client_.get(reverse("admin:rewards_reward_add"))
    help_text = page.context["adminform"].form.fields["starts_at"].help_text
    assert help_text.endswith("In the time zone of the program chosen above.")
    page = admin_client_.get(reverse("admin:rewards_reward_add") + f"?program={tokyo.pk}")
    assert page.context["adminform"].form.fields["starts_at"].help_text.endswith("Time zone: Asia/Tokyo.")


def test_a_new_object_of_the_only_program_is_in_its_zone(admin_client_, paris):
    page = admin_client_.get(reverse("admin:rewards_reward_add"))
    assert page.context["adminform"].form.fields["ends_at"].help_text.endswith("Time zone: Europe/Paris.")


def test_a_reward_window_is_typed_and_shown_in_the_program_zone(admin_client_, paris, tokyo):
    response = admin_client_.post(
        reverse("admin:rewards_reward_add"),
        {
            "program": tokyo.pk,
            "name": "New year",
            "kind": "amount_off",
            "value": "5",
            "cost_points": "100",
            "position": "0",
            "is_active": "on",
            "starts_at_0": "2027-01-01",
            "starts_at_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    reward = Reward.objects.get()
    assert reward.starts_at == dt.datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
    page = admin_client_.get(reverse("admin:rewards_reward_change", args=[reward.pk]))
    assert split(page, "starts_at") == ("2027-01-01", "00:00:00")
    listing = admin_client_.get(reverse("admin:rewards_reward_changelist")).content.decode()
    assert "2027-01-01 00:00 JST" in listing


def test_a_form_error_shows_the_typed_time_again_in_the_program_zone(admin_client_, paris):
    response = admin_client_.post(
        reverse("admin:rewards_reward_add"),
        {"program": paris.pk, "name": "", "kind": "amount_off", "value": "5", "cost_points": "100",
         "position": "0", "starts_at_0": "2026-07-01", "starts_at_1": "09:00:00"},
    )  # fmt: skip
    assert response.status_code == 200
    assert split(response, "starts_at") == ("2026-07-01", "09:00:00")


def test_coupon_dates_are_shown_in_the_program_zone(admin_client_, paris):
    member = MemberFactory(program=paris)
    now = dt.datetime(2026, 3, 4, 11, 0, tzinfo=UTC)
    ledger.points_earn(program=paris, member_id=member.pk, points=1000, occurred_at=now, now=now)
    reward = RewardFactory(program=paris, cost_points=100, valid_days=2)
    coupon = reward_services.reward_redeem(program=paris, member=member, reward=reward, now=now).redemption
    assert coupon.expires_at == dt.datetime(2026, 3, 6, 23, 0, tzinfo=UTC)  # midnight in Paris
    listing = admin_client_.get(reverse("admin:rewards_redemption_changelist")).content.decode()
    assert "2026-03-04 12:00 CET" in listing
    assert "2026-03-07 00:00 CET" in listing
    detail = admin_client_.get(reverse("admin:rewards_redemption_change", args=[coupon.pk])).content.decode()
    assert "March 7, 2026, midnight" in detail
    entries = admin_client_.get(reverse("admin:loyalty_ledgerentry_changelist")).content.decode()
    assert "2027-03-05 00:00 CET" in entries  # the points' expiry: 365 days, end of the local day


def test_the_manual_tier_end_is_typed_in_the_program_zone(admin_client_, paris):
    member = MemberFactory(program=paris)
    gold = TierFactory(program=paris, name="Gold", threshold=Decimal("0"))
    url = reverse("admin:tiers_membertier_set", args=[member.pk])
    page = admin_client_.get(url)
    assert "Time zone: Europe/Paris." in page.content.decode()
    response = admin_client_.post(
        url, {"tier": gold.pk, "until_0": "2099-07-01", "until_1": "12:00:00", "reason": "Press"}
    )
    assert response.status_code == 302
    assert MemberTier.objects.get(member=member).manual_until == dt.datetime(2099, 7, 1, 10, 0, tzinfo=UTC)
