"""Switching an automation on in the admin and through the API: the confirmation page names the
audience and cost, a stale confirmation is asked again, the API refuses without `confirm`, and
staff limited to one program never see another program's automation."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from loyalty.models import Activity, StaffAction, StaffProgram
from tests.api.conftest import client_with, make_key
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.rewards.factories import RewardFactory
from workflows.models import Automation

pytestmark = pytest.mark.django_db


@pytest.fixture
def program(db):
    return ProgramFactory(timezone="Europe/Paris", currency="EUR")


def lapsed(program, count):
    now = timezone.now()
    for _ in range(count):
        member = MemberFactory(program=program, enrolled_at=now - dt.timedelta(days=400))
        Activity.objects.create(
            program=program, member=member, type="store_visit", occurred_at=now - dt.timedelta(days=200)
        )


@pytest.fixture
def win_back(program):
    lapsed(program, 12)
    reward = RewardFactory(program=program, value=Decimal("5.00"))
    return Automation.objects.create(
        program=program, name="Win-back", period="year", min_days_inactive=90, award_points=100, reward_id=reward.pk
    )


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory(is_superuser=True))
    return client


def activate_url(automation):
    return reverse("admin:workflows_automation_activate", args=[automation.pk])


def test_the_change_page_of_an_inactive_automation_shows_the_preview(staff_client, win_back):
    page = staff_client.get(reverse("admin:workflows_automation_change", args=[win_back.pk])).content.decode()
    assert "This will give 1,200 points to 12 members and issue 12 coupons worth 60.00 EUR" in page
    assert reverse("dashboard:member", args=[win_back.program.members.order_by("id").first().pk]) in page
    assert activate_url(win_back) in page


def test_ticking_is_active_saves_but_keeps_it_off_until_confirmed(staff_client, win_back):
    data = {
        "name": "Win-back", "is_active": "on", "trigger": "daily", "activity_type": "", "period": "year",
        "min_days_inactive": "90", "award_points": "100", "reward_id": str(win_back.reward_id),
    }  # fmt: skip
    response = staff_client.post(reverse("admin:workflows_automation_change", args=[win_back.pk]), data)
    assert response.status_code == 302
    assert response["Location"] == activate_url(win_back)
    win_back.refresh_from_db()
    assert not win_back.is_active
    page = staff_client.get(activate_url(win_back)).content.decode()
    assert "I confirm: This will give 1,200 points to 12 members and issue 12 coupons worth 60.00 EUR" in page


def seen_of(page: str, automation) -> str:
    marker = f'name="seen_{automation.pk}" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)].replace("&quot;", '"')


def test_the_confirmation_page_switches_on_only_with_the_box_ticked(staff_client, win_back):
    page = staff_client.get(activate_url(win_back)).content.decode()
    seen = seen_of(page, win_back)
    assert json.loads(seen)["members"] == 12
    refused = staff_client.post(activate_url(win_back), {"ids": win_back.pk, f"seen_{win_back.pk}": seen})
    assert refused.status_code == 200
    assert "Tick the box" in refused.content.decode()
    win_back.refresh_from_db()
    assert not win_back.is_active
    done = staff_client.post(
        activate_url(win_back), {"ids": win_back.pk, f"seen_{win_back.pk}": seen, "confirm": "yes"}
    )
    assert done.status_code == 302
    win_back.refresh_from_db()
    assert win_back.is_active
    audit = StaffAction.objects.get(action="automation_activated")
    assert (audit.details["members"], audit.details["points"], audit.details["coupons_value"]) == (12, 1200, "60.00")


def test_a_changed_audience_is_shown_again_before_switching_on(staff_client, win_back):
    seen = seen_of(staff_client.get(activate_url(win_back)).content.decode(), win_back)
    lapsed(win_back.program, 8)  # meanwhile, 8 more members lapse
    again = staff_client.post(
        activate_url(win_back), {"ids": win_back.pk, f"seen_{win_back.pk}": seen, "confirm": "yes"}
    )
    assert again.status_code == 200
    page = again.content.decode()
    assert "changed since you looked" in page
    assert "2,000 points to 20 members" in page
    win_back.refresh_from_db()
    assert not win_back.is_active
    assert not StaffAction.objects.exists()
    done = staff_client.post(
        activate_url(win_back), {"ids": win_back.pk, f"seen_{win_back.pk}": seen_of(page, win_back), "confirm": "yes"}
    )
    assert done.status_code == 302
    win_back.refresh_from_db()
    assert win_back.is_active


def test_the_list_has_no_editable_switch_and_its_action_leads_to_the_confirmation(staff_client, win_back):
    url = reverse("admin:workflows_automation_changelist")
    assert 'name="form-0-is_active"' not in staff_client.get(url).content.decode()
    response = staff_client.post(url, {"action": "switch_on", "_selected_action": [win_back.pk]})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:workflows_automation_activate_many") + f"?ids={win_back.pk}"
    assert "12 members" in staff_client.get(response["Location"]).content.decode()
    win_back.refresh_from_db()
    assert not win_back.is_active


def test_staff_of_one_program_cannot_preview_or_switch_on_another_programs_automation(client, win_back):
    mine = ProgramFactory()
    user = StaffFactory()
    user.groups.add(Group.objects.get(name="Owner"))
    StaffProgram.objects.create(user=user, program=mine)
    client.force_login(user)
    assert client.get(activate_url(win_back)).status_code == 404
    assert client.post(activate_url(win_back), {"ids": win_back.pk, "confirm": "yes"}).status_code == 404
    many = client.get(reverse("admin:workflows_automation_activate_many") + f"?ids={win_back.pk}")
    assert many.status_code == 404
    win_back.refresh_from_db()
    assert not win_back.is_active
    assert client.get(f"/api/v1/automations/{win_back.pk}/preview").status_code == 401  # the admin login is no key


# --------------------------------------------------------------------------------------------
# API


def test_the_api_preview_answers_the_audience_and_cost(program, win_back):
    answer = client_with(make_key(program, scopes=["read"])[1]).get(f"/api/v1/automations/{win_back.pk}/preview")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["members"], body["points"], body["coupons"], body["coupons_value"]) == (12, 1200, 12, "60.00")
    assert len(body["sample"]) == 10


def test_the_api_refuses_to_switch_on_without_confirm_and_names_the_cost(program, win_back):
    api = client_with(make_key(program, scopes=["read", "adjust"])[1])
    refused = api.post(f"/api/v1/automations/{win_back.pk}/activate", {}, format="json")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "confirmation_required"
    assert error["details"]["preview"]["members"] == 12
    assert "1,200 points" in error["message"]
    win_back.refresh_from_db()
    assert not win_back.is_active


def test_the_api_asks_again_when_the_expected_figures_moved(program, win_back):
    api = client_with(make_key(program, scopes=["adjust"])[1])
    body = {"confirm": True, "expected": {"members": 5, "points": 500, "coupons": 5}}
    changed = api.post(f"/api/v1/automations/{win_back.pk}/activate", body, format="json")
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "audience_changed"
    assert changed.json()["error"]["details"]["preview"]["figures"]["members"] == 12


def test_the_api_switches_on_with_confirm_and_audits_the_key(program, win_back):
    key, secret = make_key(program, scopes=["adjust"], name="CRM")
    answer = client_with(secret).post(
        f"/api/v1/automations/{win_back.pk}/activate",
        {"confirm": True, "expected": {"members": 12, "points": 1200, "coupons": 12}},
        format="json",
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["activated"] is True
    win_back.refresh_from_db()
    assert win_back.is_active
    audit = StaffAction.objects.get()
    assert (audit.actor, audit.details["api_key"], audit.details["api_key_name"]) == (None, key.prefix, "CRM")


def test_the_api_needs_the_adjust_scope_and_hides_other_programs(program, win_back):
    write = client_with(make_key(program, scopes=["read", "write"])[1])
    assert (
        write.post(f"/api/v1/automations/{win_back.pk}/activate", {"confirm": True}, format="json").status_code == 403
    )
    other = client_with(make_key(ProgramFactory(), scopes=["read", "adjust"])[1])
    assert other.get(f"/api/v1/automations/{win_back.pk}/preview").status_code == 404
    assert (
        other.post(f"/api/v1/automations/{win_back.pk}/activate", {"confirm": True}, format="json").status_code == 404
    )
    win_back.refresh_from_db()
    assert not win_back.is_active
