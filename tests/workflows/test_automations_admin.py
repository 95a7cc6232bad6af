"""The automations admin (`workflows.admin_automations`): add/change pages, validation, the
"Install ready-made automations" page and the read-only runs."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.tiers.factories import TierFactory
from workflows import automations
from workflows.models import Automation, AutomationRun

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def admin_client_(client):
    client.force_login(StaffFactory(is_superuser=True))
    return client


@pytest.fixture
def program(db):
    return ProgramFactory(timezone="Europe/Paris")


def form_data(program, **overrides):
    data = {
        "program": program.pk,
        "name": "Win them back",
        "is_active": "on",
        "trigger": "daily",
        "activity_type": "",
        "period": "year",
        "min_days_inactive": "60",
        "award_points": "150",
        "email_subject": "We miss you {{ member.first_name }}",
        "email_body": "{{ points }} points for you.",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def errors_of(response):
    assert response.status_code == 200, response
    return response.context["adminform"].form.errors


def test_staff_create_an_automation_with_tiers_as_check_boxes(admin_client_, program):
    gold = TierFactory(program=program, name="Gold", position=2)
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"), form_data(program, tiers=[str(gold.pk)], set_tier=str(gold.pk))
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    automation = Automation.objects.get()
    assert (automation.name, automation.min_days_inactive, automation.award_points) == ("Win them back", 60, 150)
    assert list(automation.tiers.all()) == [gold]
    assert automation.set_tier == gold
    assert automation.ready_made == ""


def test_the_activity_trigger_needs_an_activity_type(admin_client_, program):
    response = admin_client_.post(reverse("admin:workflows_automation_add"), form_data(program, trigger="activity"))
    assert "activity_type" in errors_of(response)
    assert not Automation.objects.exists()


def test_other_triggers_take_no_activity_type(admin_client_, program):
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"), form_data(program, activity_type="purchase")
    )
    assert "activity_type" in errors_of(response)


def test_an_automation_needs_at_least_one_action(admin_client_, program):
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"),
        form_data(program, award_points="", email_subject="", email_body=""),
    )
    assert "at least one action" in str(errors_of(response)["__all__"])


def test_an_email_needs_subject_and_body_and_valid_templates(admin_client_, program):
    response = admin_client_.post(reverse("admin:workflows_automation_add"), form_data(program, email_body=""))
    assert "email_body" in errors_of(response)
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"), form_data(program, email_subject="Hi {% if %}")
    )
    assert "Template error" in str(errors_of(response)["email_subject"])


def test_tiers_and_set_tier_must_belong_to_the_program(admin_client_, program):
    foreign = TierFactory(program=ProgramFactory(), name="Foreign")
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"),
        form_data(program, tiers=[str(foreign.pk)], set_tier=str(foreign.pk)),
    )
    errors = errors_of(response)
    assert "tiers" in errors
    assert "set_tier" in errors
    assert not Automation.objects.exists()


def test_set_tier_days_need_a_tier(admin_client_, program):
    response = admin_client_.post(reverse("admin:workflows_automation_add"), form_data(program, set_tier_days="30"))
    assert "set_tier_days" in errors_of(response)


def test_change_page_limits_tiers_to_the_program_and_shows_recent_runs(admin_client_, program):
    mine = TierFactory(program=program, name="Mine")
    TierFactory(program=ProgramFactory(), name="NotMine")
    automation = Automation.objects.create(program=program, name="Bonus", is_active=True, award_points=5)
    member = MemberFactory(program=program, enrolled_at=NOW - dt.timedelta(days=10))
    automations.automations_run(now=NOW)

    response = admin_client_.get(reverse("admin:workflows_automation_change", args=[automation.pk]))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert list(form.fields["tiers"].queryset) == [mine]
    content = response.content.decode()
    assert str(member) in content
    assert f"?automation__id__exact={automation.pk}" in content


def test_change_keeps_the_program_and_saves(admin_client_, program):
    automation = Automation.objects.create(program=program, name="Bonus", award_points=5)
    data = form_data(program, name="Bigger bonus", award_points="50")
    data.pop("program")
    response = admin_client_.post(reverse("admin:workflows_automation_change", args=[automation.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    automation.refresh_from_db()
    assert (automation.name, automation.award_points, automation.program) == ("Bigger bonus", 50, program)


def test_changelist_offers_the_install_button(admin_client_, program):
    response = admin_client_.get(reverse("admin:workflows_automation_changelist"))
    assert response.status_code == 200
    assert reverse("admin:workflows_automation_install_ready_made") in response.content.decode()


def test_install_ready_made_page_installs_once(admin_client_, program):
    url = reverse("admin:workflows_automation_install_ready_made")
    assert admin_client_.get(url).status_code == 200

    response = admin_client_.post(url, {"program": program.pk})
    assert response.status_code == 302
    assert set(Automation.objects.filter(program=program).values_list("ready_made", flat=True)) == {
        "vip_purchase_history",
        "win_back",
        "anniversary",
    }
    assert not Automation.objects.filter(is_active=True).exists()

    admin_client_.post(url, {"program": program.pk})
    assert Automation.objects.filter(program=program).count() == 3


def test_install_ready_made_needs_the_add_permission(client, program):
    client.force_login(StaffFactory())  # staff without permissions
    response = client.post(reverse("admin:workflows_automation_install_ready_made"), {"program": program.pk})
    assert response.status_code == 403
    assert not Automation.objects.exists()


def test_ready_made_is_read_only_on_the_change_page(admin_client_, program):
    (vip, _), *_ = automations.automations_install_ready_made(program=program)
    response = admin_client_.get(reverse("admin:workflows_automation_change", args=[vip.pk]))
    assert response.status_code == 200
    assert "ready_made" not in response.context["adminform"].form.fields
    assert "VIP by purchase history" in response.content.decode()


def test_runs_are_read_only_and_searchable_by_member_id(admin_client_, program):
    automation = Automation.objects.create(program=program, name="Bonus", is_active=True, award_points=5)
    first, second = MemberFactory.create_batch(2, program=program, enrolled_at=NOW - dt.timedelta(days=10))
    automations.automations_run(now=NOW)
    url = reverse("admin:workflows_automationrun_changelist")

    response = admin_client_.get(url, {"q": str(second.pk)})
    assert response.status_code == 200
    assert [r.member_id for r in response.context["cl"].result_list] == [second.pk]

    response = admin_client_.get(url, {"q": "not-an-id"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []

    response = admin_client_.get(url, {"automation__id__exact": automation.pk})
    assert {r.member_id for r in response.context["cl"].result_list} == {first.pk, second.pk}

    assert admin_client_.get(reverse("admin:workflows_automationrun_add")).status_code == 403
    run = AutomationRun.objects.get(member=first)
    response = admin_client_.post(reverse("admin:workflows_automationrun_change", args=[run.pk]), {"points": "999"})
    run.refresh_from_db()
    assert run.points == 5


def test_the_reward_must_be_one_of_the_program(admin_client_, program):
    from tests.rewards.factories import RewardFactory

    foreign = RewardFactory()
    page = admin_client_.post(
        reverse("admin:workflows_automation_add"),
        {
            "program": program.pk,
            "name": "Gift",
            "trigger": "daily",
            "period": "year",
            "reward_id": foreign.pk,
        },
    )
    assert page.status_code == 200
    assert "No reward of this automation" in page.content.decode()


def test_an_unknown_email_variable_is_refused_naming_it(admin_client_, program):
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"),
        form_data(program, email_body="Use {{ coupon.code }} before {{ member.birthday }}."),
    )
    errors = errors_of(response)["email_body"]
    assert errors[0].startswith("Unknown variable(s): coupon.code, member.birthday. This automation's email can use:")
    assert "points" in errors[0]
    assert not Automation.objects.exists()


def test_the_coupon_variable_comes_with_the_reward_action(admin_client_, program):
    from tests.rewards.factories import RewardFactory

    reward = RewardFactory(program=program)
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"),
        form_data(program, reward_id=str(reward.pk), email_body="Your code: {{ coupon.code }}"),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Automation.objects.get().email_body == "Your code: {{ coupon.code }}"


def test_the_tier_variable_needs_the_set_tier_action(admin_client_, program):
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"), form_data(program, email_subject="Welcome to {{ tier.name }}")
    )
    assert "Unknown variable(s): tier.name." in errors_of(response)["email_subject"][0]


def test_a_template_syntax_error_is_refused(admin_client_, program):
    response = admin_client_.post(
        reverse("admin:workflows_automation_add"), form_data(program, email_body="{% if points %}no end")
    )
    assert errors_of(response)["email_body"][0].startswith("Template error:")


def test_the_ready_made_automations_pass_the_email_check(program):
    TierFactory(program=program, name="Gold", position=2)
    for automation, _ in automations.automations_install_ready_made(program=program):
        variables = automations.email_variables(
            award_points=bool(automation.award_points),
            set_tier=automation.set_tier_id is not None,
            reward=bool(automation.reward_id),
        )
        for source in (automation.email_subject, automation.email_body):
            assert automations.email_template_problems(source, variables) == []
