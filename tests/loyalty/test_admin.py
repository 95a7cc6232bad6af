"""The staff admin of the loyalty core: pages render, the ledger is read-only, and the posting
pages (adjust, transfer) go through the services with a reason, a permission and an
idempotency token."""

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from loyalty import services
from loyalty.models import Activity, Allocation, IdempotencyRecord, LedgerEntry, LedgerJobRun, Member

from .factories import MemberFactory, StaffFactory

NOW = timezone.now()


def earn(member, points, **kwargs):
    return services.points_earn(program=member.program, member_id=member.pk, points=points, **kwargs)


@pytest.fixture
def superuser(db):
    return StaffFactory(username="root", is_superuser=True)


@pytest.fixture
def admin_client_(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def member_with_history(member, staff):
    """A member with a purchase, an earn, a redemption (allocations), an adjustment and a
    keyed posting (an idempotency record), plus a run of the release job."""
    purchase = services.activity_record(
        program=member.program,
        member=member,
        type=Activity.Type.PURCHASE,
        occurred_at=NOW,
        order_id="A-100",
        amount=Decimal("120.00"),
    )
    earn(member, 120, activity=purchase, reference="A-100", idempotency_key="shop-earn-1")
    services.points_redeem(program=member.program, member_id=member.pk, points=50, reference="CPN-1")
    services.points_adjust(program=member.program, member_id=member.pk, points=10, reason="Goodwill", actor=staff)
    services.points_release(now=NOW, program=member.program)
    member.refresh_from_db()
    return member


def manager_user(*, group: str = "Manager"):
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=group))
    return user


def form_token(response) -> str:
    match = re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', response.content.decode())
    assert match, "the page carries a hidden idempotency token"
    return match.group(1)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- pages render ---------------------------------------------------------------------------

MODELS = ["program", "member", "ledgerentry", "activity", "idempotencyrecord", "ledgerjobrun"]


@pytest.mark.parametrize("model", MODELS)
def test_changelist_renders_for_a_superuser(admin_client_, member_with_history, model):
    response = admin_client_.get(reverse(f"admin:loyalty_{model}_changelist"))

    assert response.status_code == 200


@pytest.mark.parametrize("model", MODELS)
def test_change_page_renders_for_a_superuser(admin_client_, member_with_history, model):
    obj = {
        "program": member_with_history.program,
        "member": member_with_history,
        "ledgerentry": LedgerEntry.objects.filter(kind="redeem").first(),
        "activity": Activity.objects.first(),
        "idempotencyrecord": IdempotencyRecord.objects.first(),
        "ledgerjobrun": LedgerJobRun.objects.first(),
    }[model]

    response = admin_client_.get(reverse(f"admin:loyalty_{model}_change", args=[obj.pk]))

    assert response.status_code == 200


@pytest.mark.parametrize("model", ["program", "member"])
def test_add_page_renders_for_a_superuser(admin_client_, db, model):
    assert admin_client_.get(reverse(f"admin:loyalty_{model}_add")).status_code == 200


def test_member_change_page_shows_recent_entries_and_links(admin_client_, member_with_history):
    response = admin_client_.get(reverse("admin:loyalty_member_change", args=[member_with_history.pk]))

    html = response.content.decode()
    assert "Latest entries" in html
    assert "CPN-1" in html
    assert "Goodwill" in html
    assert f"?member__id__exact={member_with_history.pk}" in html
    assert reverse("admin:loyalty_member_adjust_points", args=[member_with_history.pk]) in html
    assert reverse("admin:loyalty_member_transfer_points", args=[member_with_history.pk]) in html


def test_ledger_link_lists_only_that_members_entries(admin_client_, member_with_history, other_member):
    earn(other_member, 7, reference="OTHER-REF")

    response = admin_client_.get(
        reverse("admin:loyalty_ledgerentry_changelist"), {"member__id__exact": member_with_history.pk}
    )

    assert response.status_code == 200
    shown = {e.pk for e in response.context["cl"].result_list}
    assert shown == set(LedgerEntry.objects.filter(member=member_with_history).values_list("pk", flat=True))


def test_ledger_entry_page_shows_its_allocations(admin_client_, member_with_history):
    redemption = LedgerEntry.objects.get(kind="redeem", member=member_with_history)

    response = admin_client_.get(reverse("admin:loyalty_ledgerentry_change", args=[redemption.pk]))

    assert "Lots this debit consumed" in response.content.decode()
    assert Allocation.objects.filter(debit=redemption).exists()


# --- member search -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("FINDME@Example.com", True),  # exact email, any case
        ("ext-42", True),  # exact external id
        ("Zelda", True),  # first-name prefix
        ("findme@example", True),  # part of an email (trigram index, issue 13)
        ("nobody@example", False),
    ],
)
def test_member_search(admin_client_, program, term, expected):
    target = MemberFactory(program=program, email="findme@example.com", external_id="ext-42", first_name="Zelda")
    MemberFactory(program=program)

    response = admin_client_.get(reverse("admin:loyalty_member_changelist"), {"q": term})

    found = [m.pk for m in response.context["cl"].result_list]
    assert found == ([target.pk] if expected else [])


def test_member_search_by_member_id(admin_client_, member, other_member):
    response = admin_client_.get(reverse("admin:loyalty_member_changelist"), {"q": str(other_member.pk)})

    assert [m.pk for m in response.context["cl"].result_list] == [other_member.pk]


def test_activity_search_by_order_id(admin_client_, member_with_history):
    response = admin_client_.get(reverse("admin:loyalty_activity_changelist"), {"q": "A-100"})

    assert [a.order_id for a in response.context["cl"].result_list] == ["A-100"]


# --- the ledger is read-only -------------------------------------------------------------------


def test_ledger_entry_cannot_be_added(admin_client_, db):
    assert admin_client_.get(reverse("admin:loyalty_ledgerentry_add")).status_code == 403


def test_ledger_entry_cannot_be_changed(admin_client_, member_with_history):
    entry = LedgerEntry.objects.filter(member=member_with_history, kind="earn").first()
    url = reverse("admin:loyalty_ledgerentry_change", args=[entry.pk])

    page = admin_client_.get(url)
    response = admin_client_.post(url, {"points": 999999, "remaining": 999999, "reason": "hack"})

    assert 'name="points"' not in page.content.decode()  # view-only page: no inputs
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.points == 120


def test_ledger_entry_cannot_be_deleted(admin_client_, member_with_history):
    entry = LedgerEntry.objects.filter(member=member_with_history).first()
    url = reverse("admin:loyalty_ledgerentry_delete", args=[entry.pk])

    assert admin_client_.get(url).status_code == 403
    assert admin_client_.post(url, {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_ledger_changelist_offers_no_delete_action(admin_client_, member_with_history):
    entry = LedgerEntry.objects.filter(member=member_with_history).first()
    response = admin_client_.get(reverse("admin:loyalty_ledgerentry_changelist"))

    assert "delete_selected" not in response.content.decode()
    admin_client_.post(
        reverse("admin:loyalty_ledgerentry_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_allocations_have_no_admin_page_of_their_own(db):
    with pytest.raises(NoReverseMatch):
        reverse("admin:loyalty_allocation_changelist")


@pytest.mark.parametrize("model", ["activity", "idempotencyrecord", "ledgerjobrun"])
def test_other_ledger_models_are_read_only(admin_client_, member_with_history, model):
    assert admin_client_.get(reverse(f"admin:loyalty_{model}_add")).status_code == 403


# --- members: add, change, block -------------------------------------------------------------


def test_adding_a_member_enrolls_through_the_service(admin_client_, program):
    response = admin_client_.post(
        reverse("admin:loyalty_member_add"),
        {
            "program": program.pk,
            "external_id": "shop-77",
            "email": "New@Example.com",
            "first_name": "Nora",
            "last_name": "Ng",
            "birthday": "",
            "referred_by": "",
        },
    )

    assert response.status_code == 302
    member = Member.objects.get(external_id="shop-77")
    assert member.enrollment_channel == Member.Channel.ADMIN
    assert member.email == "new@example.com"


def test_saving_a_member_never_writes_the_balances(admin_client_, member):
    url = reverse("admin:loyalty_member_change", args=[member.pk])
    admin_client_.get(url)
    earn(member, 40)  # posted while the form is open

    response = admin_client_.post(
        url,
        {
            "external_id": member.external_id,
            "email": "changed@example.com",
            "first_name": "Grace",
            "last_name": member.last_name,
            "birthday": "",
            "referred_by": "",
            "user": "",
        },
    )

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.first_name, member.email, member.available) == ("Grace", "changed@example.com", 40)


def test_block_and_unblock_actions_use_the_service(admin_client_, member, other_member):
    url = reverse("admin:loyalty_member_changelist")

    admin_client_.post(url, {"action": "block", "_selected_action": [member.pk, other_member.pk]})
    statuses = set(Member.objects.values_list("status", flat=True))
    admin_client_.post(url, {"action": "unblock", "_selected_action": [member.pk]})

    assert statuses == {Member.Status.BLOCKED}
    member.refresh_from_db()
    other_member.refresh_from_db()
    assert (member.status, other_member.status) == (Member.Status.ACTIVE, Member.Status.BLOCKED)


# --- adjust points ---------------------------------------------------------------------------


def adjust_url(member):
    return reverse("admin:loyalty_member_adjust_points", args=[member.pk])


def test_adjust_page_posts_an_adjustment_through_the_service(admin_client_, superuser, member):
    earn(member, 100)
    token = form_token(admin_client_.get(adjust_url(member)))

    response = admin_client_.post(
        adjust_url(member), {"points": "-30", "reason": "Damaged bag", "idempotency_key": token}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:loyalty_member_change", args=[member.pk])
    entry = LedgerEntry.objects.get(member=member, kind="adjust")
    assert (entry.points, entry.reason, entry.created_by_id) == (-30, "Damaged bag", superuser.pk)
    member.refresh_from_db()
    assert member.available == 70
    assert any("70 available" in m for m in messages_of(response))


def test_adjust_requires_a_reason_and_posts_nothing_without_one(admin_client_, member):
    token = form_token(admin_client_.get(adjust_url(member)))

    response = admin_client_.post(adjust_url(member), {"points": "50", "reason": "   ", "idempotency_key": token})

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert not LedgerEntry.objects.filter(member=member).exists()


def test_adjust_page_is_forbidden_without_the_permission(client, member):
    clerk = StaffFactory()  # may view and change members, not post points
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["view_member", "change_member"]))
    client.force_login(clerk)

    assert client.get(reverse("admin:loyalty_member_change", args=[member.pk])).status_code == 200
    assert client.get(adjust_url(member)).status_code == 403
    response = client.post(
        adjust_url(member), {"points": "50", "reason": "x", "idempotency_key": "5d0d6a52-6a7f-4a4e-9d43-0f8a7c1a0b1c"}
    )
    assert response.status_code == 403
    assert not LedgerEntry.objects.filter(member=member).exists()


def test_a_plain_staff_user_with_change_member_cannot_adjust(client, member):
    user = StaffFactory()
    user.user_permissions.add(Permission.objects.get(codename="change_member"))
    client.force_login(user)

    assert client.get(adjust_url(member)).status_code == 403


def test_a_manager_may_adjust(client, member):
    manager = manager_user()
    client.force_login(manager)
    token = form_token(client.get(adjust_url(member)))

    client.post(adjust_url(member), {"points": "25", "reason": "Welcome gift", "idempotency_key": token})

    assert LedgerEntry.objects.get(member=member).created_by_id == manager.pk


def test_double_submit_of_an_adjustment_posts_once(admin_client_, member):
    token = form_token(admin_client_.get(adjust_url(member)))
    data = {"points": "50", "reason": "Goodwill", "idempotency_key": token}

    first = admin_client_.post(adjust_url(member), data)
    second = admin_client_.post(adjust_url(member), data)

    assert first.status_code == second.status_code == 302
    assert LedgerEntry.objects.filter(member=member).count() == 1
    member.refresh_from_db()
    assert member.available == 50
    assert any("already posted" in m for m in messages_of(second))


def test_reused_token_with_other_values_is_a_form_error(admin_client_, member):
    token = form_token(admin_client_.get(adjust_url(member)))
    admin_client_.post(adjust_url(member), {"points": "50", "reason": "Goodwill", "idempotency_key": token})

    response = admin_client_.post(adjust_url(member), {"points": "60", "reason": "Goodwill", "idempotency_key": token})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert LedgerEntry.objects.filter(member=member).count() == 1


def test_each_rendering_of_the_adjust_page_draws_a_new_token(admin_client_, member):
    assert form_token(admin_client_.get(adjust_url(member))) != form_token(admin_client_.get(adjust_url(member)))


# --- transfer points -------------------------------------------------------------------------


def transfer_url(member):
    return reverse("admin:loyalty_member_transfer_points", args=[member.pk])


@pytest.mark.parametrize("to", ["email", "external_id", "pk"])
def test_transfer_page_moves_points_to_another_member(admin_client_, member, other_member, to):
    earn(member, 100)
    token = form_token(admin_client_.get(transfer_url(member)))
    reference = {
        "email": other_member.email.upper(),
        "external_id": other_member.external_id,
        "pk": f"#{other_member.pk}",
    }[to]

    response = admin_client_.post(
        transfer_url(member),
        {
            "to_member": reference,
            "points": "40",
            "reason": "Household",
            "idempotency_key": token,
        },
    )

    assert response.status_code == 302
    member.refresh_from_db()
    other_member.refresh_from_db()
    assert (member.available, other_member.available) == (60, 40)
    assert any("Transferred 40" in m for m in messages_of(response))


def test_transfer_refuses_insufficient_points_with_a_form_error(admin_client_, member, other_member):
    earn(member, 30)
    token = form_token(admin_client_.get(transfer_url(member)))

    response = admin_client_.post(
        transfer_url(member),
        {
            "to_member": other_member.external_id,
            "points": "31",
            "reason": "Household",
            "idempotency_key": token,
        },
    )

    assert response.status_code == 200
    assert "points" in response.context["form"].errors
    assert LedgerEntry.objects.filter(kind="transfer").count() == 0
    member.refresh_from_db()
    assert member.available == 30


def test_transfer_refuses_an_unknown_or_same_receiver(admin_client_, member):
    earn(member, 30)
    token = form_token(admin_client_.get(transfer_url(member)))

    unknown = admin_client_.post(
        transfer_url(member),
        {"to_member": "nobody@example.com", "points": "5", "reason": "x", "idempotency_key": token},
    )
    same = admin_client_.post(
        transfer_url(member), {"to_member": member.external_id, "points": "5", "reason": "x", "idempotency_key": token}
    )

    assert "to_member" in unknown.context["form"].errors
    assert "to_member" in same.context["form"].errors
    assert LedgerEntry.objects.filter(kind="transfer").count() == 0


def test_transfer_to_a_member_of_another_program_is_refused(admin_client_, member):
    stranger = MemberFactory()  # another program
    earn(member, 30)
    token = form_token(admin_client_.get(transfer_url(member)))

    response = admin_client_.post(
        transfer_url(member),
        {"to_member": stranger.external_id, "points": "5", "reason": "x", "idempotency_key": token},
    )

    assert "to_member" in response.context["form"].errors


def test_transfer_page_is_forbidden_without_the_permission(client, member):
    client.force_login(manager_user(group="Support"))

    assert client.get(transfer_url(member)).status_code == 403


# --- staff groups (migrations 0004 and 0016; tests/integration/test_staff_scope.py has the rest) -


def test_staff_groups_exist_with_their_permissions(db):
    perms = {
        name: set(Group.objects.get(name=name).permissions.values_list("codename", flat=True))
        for name in ("Owner", "Manager", "Support")
    }

    assert {"change_program", "change_member", "view_ledgerentry", "change_periodictask"} <= perms["Owner"]
    assert {"change_program", "change_member", "view_ledgerentry", "view_reports"} <= perms["Manager"]
    assert "add_program" not in perms["Manager"]
    assert {"view_member", "change_member", "adjust_points"} <= perms["Support"]
    assert not {"view_program", "change_program", "transfer_points", "view_reports"} & perms["Support"]
    assert not any(p.startswith(("add_ledger", "change_ledger", "delete_ledger")) for ps in perms.values() for p in ps)


def test_large_change_lists_never_count_past_the_cap(admin_client_, member_with_history, monkeypatch):
    from loyalty.admin import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    response = admin_client_.get(reverse("admin:loyalty_ledgerentry_changelist"))

    assert response.context["cl"].result_count == 3  # counted up to cap + 1, not the table
    assert "More than 2 ledger entries" in response.content.decode()


@pytest.mark.parametrize("object_id", ["abc", "3/adjust"])
def test_a_member_address_that_is_not_a_member_id_is_not_a_server_error(admin_client_, db, object_id):
    response = admin_client_.get(f"/admin/loyalty/member/{object_id}/change/", follow=True)

    assert response.status_code == 200
    # Django's message for an unknown id, on the page it redirects to (the dashboard)
    assert any("doesn\u2019t exist" in message for message in messages_of(response))
