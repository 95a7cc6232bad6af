import pytest
from django.urls import reverse

from loyalty.models import Activity, LedgerEntry
from tests.loyalty.factories import StaffFactory
from workflows.models import EarningRule, RuleAward

from .factories import EarningRuleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client):
    client.force_login(StaffFactory(is_superuser=True))
    return client


def test_staff_create_a_rule_with_days_and_categories(admin_client_, program):
    response = admin_client_.post(
        reverse("admin:workflows_earningrule_add"),
        {
            "program": program.pk,
            "name": "Weekend apparel",
            "trigger": "purchase",
            "is_active": "on",
            "kind": "per_category",
            "points": "2",
            "multiplier": "1",
            "channel": "",
            "include_categories": "apparel,shoes",
            "exclude_categories": "",
            "include_skus": "",
            "exclude_skus": "",
            "days_of_week": ["5", "6"],
            "priority": "0",
            "stackable": "on",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = EarningRule.objects.get()
    assert rule.include_categories == ["apparel", "shoes"]
    assert rule.days_of_week == [5, 6]


def test_a_per_category_rule_needs_its_categories(admin_client_, program):
    response = admin_client_.post(
        reverse("admin:workflows_earningrule_add"),
        {"program": program.pk, "name": "x", "trigger": "purchase", "kind": "per_category", "points": "1",
         "multiplier": "1", "priority": "0"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "include_categories" in response.context["adminform"].form.errors


def test_changelist_and_award_list_render(admin_client_, program):
    EarningRuleFactory(program=program)
    assert admin_client_.get(reverse("admin:workflows_earningrule_changelist")).status_code == 200
    assert admin_client_.get(reverse("admin:workflows_ruleaward_changelist")).status_code == 200
    assert admin_client_.get(reverse("admin:workflows_ruleaward_add")).status_code == 403


def test_preview_page_shows_the_points_and_posts_nothing(admin_client_, program, member):
    EarningRuleFactory(program=program, name="Per euro", kind="per_amount", points=1)
    EarningRuleFactory(program=program, name="Apparel", kind="per_item", points=3, include_categories=["apparel"])
    response = admin_client_.get(
        reverse("admin:workflows_earningrule_preview"),
        {
            "program": program.pk,
            "member": member.external_id,
            "type": "purchase",
            "amount": "20.00",
            "channel": "online",
            "items": "TEE-1, apparel, 2, 10.00",
        },
    )
    assert response.status_code == 200
    assert response.context["preview"].points == 26
    assert b"Per euro" in response.content
    assert not Activity.objects.exists()
    assert not LedgerEntry.objects.exists()
    assert not RuleAward.objects.exists()


def test_preview_page_reports_a_bad_item_line(admin_client_, program, member):
    response = admin_client_.get(
        reverse("admin:workflows_earningrule_preview"),
        {"program": program.pk, "member": str(member.pk), "type": "purchase", "items": "just-a-sku"},
    )
    assert response.status_code == 200
    assert "items" in response.context["form"].errors


def test_add_built_in_rules_button_installs_them_switched_off_once(admin_client_, program):
    url = reverse("admin:workflows_earningrule_install_builtins")
    assert admin_client_.get(url).status_code == 403  # a write: POST only
    page = admin_client_.get(reverse("admin:workflows_earningrule_changelist"))
    assert url in page.content.decode()
    first = admin_client_.post(url, follow=True)
    assert "5 built-in rule(s) added" in first.content.decode()
    rules = EarningRule.objects.filter(program=program).exclude(builtin="")
    assert sorted(rules.values_list("builtin", flat=True)) == [
        "birthday",
        "purchase",
        "signup",
        "social_share",
        "store_visit",
    ]
    assert not rules.filter(is_active=True).exists()
    second = admin_client_.post(url, follow=True)
    assert "already has the built-in rules" in second.content.decode()
    assert rules.count() == 5
