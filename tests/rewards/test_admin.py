import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from loyalty import services as ledger
from rewards.models import Redemption
from tests.loyalty.factories import MemberFactory, ProgramFactory

from .factories import RewardFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["redeem_for_member", "view_redemption", "view_reward", "change_reward", "add_reward"]
        )
    )
    return user


@pytest.fixture
def member(db):
    program = ProgramFactory(min_redemption=0)
    m = MemberFactory(program=program)
    ledger.points_earn(program=program, member_id=m.pk, points=500)
    return m


def test_redeem_page_issues_one_coupon_on_a_double_submit(client, staff, member):
    reward = RewardFactory(program=member.program, cost_points=200)
    client.force_login(staff)
    url = reverse("admin:rewards_redemption_redeem", args=[member.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert reward.name in page.content.decode()
    data = {"reward": reward.pk, "idempotency_key": str(uuid.uuid4())}
    first = client.post(url, data)
    second = client.post(url, data)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert Redemption.objects.count() == 1
    member.refresh_from_db()
    assert member.available == 300


def test_redeem_page_shows_refusals(client, staff, member):
    reward = RewardFactory(program=member.program, cost_points=5000)
    client.force_login(staff)
    url = reverse("admin:rewards_redemption_redeem", args=[member.pk])
    page = client.post(url, {"reward": reward.pk, "idempotency_key": str(uuid.uuid4())})
    assert page.status_code == 200
    assert "5000 needed" in page.content.decode()
    assert not Redemption.objects.exists()


def test_redeem_page_needs_the_permission(client, django_user_model, member):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:rewards_redemption_redeem", args=[member.pk])).status_code == 403


def test_coupon_search_by_code_as_typed(client, staff, member):
    from rewards import services

    reward = RewardFactory(program=member.program, cost_points=100)
    coupon = services.reward_redeem(program=member.program, member=member, reward=reward).redemption
    client.force_login(staff)
    page = client.get(reverse("admin:rewards_redemption_changelist"), {"q": coupon.code.lower().replace("-", "")})
    assert page.status_code == 200
    assert coupon.code in page.content.decode()


def test_reward_add_form_validates(client, staff, member):
    client.force_login(staff)
    page = client.post(
        reverse("admin:rewards_reward_add"),
        {
            "program": member.program.pk,
            "name": "Bad",
            "kind": "percent_off",
            "value": "150",
            "cost_points": "10",
            "position": 0,
            "is_active": "on",
        },
    )
    assert page.status_code == 200
    assert "A percentage is at most 100." in page.content.decode()


def test_the_member_page_links_to_the_redeem_page(client, staff, member):
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(staff)
    page = client.get(reverse("admin:loyalty_member_change", args=[member.pk]))
    assert page.status_code == 200
    assert reverse("admin:rewards_redemption_redeem", args=[member.pk]) in page.content.decode()


def test_cancel_action_refuses_too_many_at_once(client, django_user_model, member, monkeypatch):
    from rewards import admin as rewards_admin
    from rewards import services

    monkeypatch.setattr(rewards_admin, "CANCEL_AT_ONCE", 1)
    reward = RewardFactory(program=member.program, cost_points=100)
    codes = [services.reward_redeem(program=member.program, member=member, reward=reward).redemption for _ in range(2)]
    client.force_login(django_user_model.objects.create_superuser("boss", password="pw"))
    client.post(
        reverse("admin:rewards_redemption_changelist"),
        {"action": "cancel_coupons", "_selected_action": [c.pk for c in codes]},
    )
    assert set(Redemption.objects.values_list("status", flat=True)) == {"issued"}
    client.post(
        reverse("admin:rewards_redemption_changelist"),
        {"action": "cancel_coupons", "_selected_action": [codes[0].pk]},
    )
    assert Redemption.objects.get(pk=codes[0].pk).status == "cancelled"


def test_the_reward_list_counts_the_coupons_issued_without_a_query_per_row(
    client, django_user_model, member, django_assert_max_num_queries
):
    from rewards import services

    program = member.program
    unlimited = RewardFactory(program=program, name="Coffee", cost_points=10)
    stocked = RewardFactory(program=program, name="Mug", cost_points=10, stock=10)
    RewardFactory(program=program, name="Never redeemed", cost_points=10)
    for _ in range(3):
        services.reward_redeem(program=program, member=member, reward=unlimited)
    services.reward_gift(program=program, member=member, reward=unlimited, reason="gift", idempotency_key="g")
    cancelled = services.reward_redeem(program=program, member=member, reward=stocked).redemption
    services.reward_redeem(program=program, member=member, reward=stocked)
    services.redemption_cancel(program=program, code=cancelled.code)
    admin_user = django_user_model.objects.create_superuser("boss", password="pw")
    client.force_login(admin_user)
    with django_assert_max_num_queries(12):
        page = client.get(reverse("admin:rewards_reward_changelist"))
    assert page.status_code == 200
    counts = {r.name: page.context["cl"].model_admin.coupons_issued(r) for r in page.context["cl"].result_list}
    assert counts == {"Coffee": 4, "Mug": 1, "Never redeemed": 0}
    assert "Coupons issued" in page.content.decode()


def test_the_reward_form_shows_the_coupons_issued_and_the_stock_taken(client, django_user_model, member):
    from rewards import services

    reward = RewardFactory(program=member.program, cost_points=10, stock=5)
    services.reward_redeem(program=member.program, member=member, reward=reward)
    client.force_login(django_user_model.objects.create_superuser("boss", password="pw"))
    page = client.get(reverse("admin:rewards_reward_change", args=[reward.pk]))
    body = page.content.decode()
    assert "Coupons issued" in body
    assert "Stock taken" in body
    assert page.context["adminform"].form.instance.coupons == 1
