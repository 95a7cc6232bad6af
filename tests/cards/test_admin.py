"""The card admin: fast list and search, read-only change page with the member's balance and
ledger, and writes only through the services (actions, assign and replace pages)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cards import numbers, services
from cards.models import Card, CardEvent
from loyalty import services as loyalty_services
from tests.loyalty.factories import MemberFactory

from .factories import CardFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:cards_card_changelist"


@pytest.fixture
def admin_client_(client, staff):
    client.force_login(staff)
    return client


def change_url(card: Card) -> str:
    return reverse("admin:cards_card_change", args=[card.pk])


def listed(response) -> set[str]:
    return {c.number for c in response.context["cl"].result_list}


def test_changelist_renders_without_counting_the_table(admin_client_, active_card, unassigned_card):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client_.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert listed(response) == {active_card.number, unassigned_card.number}
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "cards_card" in q["sql"]]
    # Only the capped count (a LIMITed sub-query), never a plain count of the table.
    assert counts
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_changelist_with_filters_renders(admin_client_, active_card, program):
    response = admin_client_.get(reverse(CHANGELIST), {"status__exact": "active", "program__id__exact": program.pk})
    assert response.status_code == 200
    assert listed(response) == {active_card.number}


@pytest.mark.parametrize("how", ["exact", "prefix", "spaced"])
def test_search_by_number_exact_or_prefix(admin_client_, program, active_card, how):
    other = CardFactory(program=program)
    n = active_card.number
    common = 0
    while common < len(n) and n[common] == other.number[common]:
        common += 1
    term = {"exact": n, "prefix": n[: common + 1], "spaced": f"{n[:4]} {n[4:8]}-{n[8:]}"}[how]
    response = admin_client_.get(reverse(CHANGELIST), {"q": term})
    assert listed(response) == {n}


def test_search_by_number_prefix_is_an_index_scan_on_the_number(rf, staff, active_card):
    from cards.admin import CardAdmin

    card_admin = CardAdmin(Card, admin.site)
    queryset, _ = card_admin.get_search_results(rf.get("/"), Card.objects.all(), active_card.number[:6])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a test table is tiny; ask what a big one gets
        plan = queryset.order_by().explain()
    assert "cards_card_number_" in plan, plan
    assert "_like" in plan, plan


def test_search_by_member_email(admin_client_, active_card, unassigned_card):
    response = admin_client_.get(reverse(CHANGELIST), {"q": active_card.member.email.upper()})
    assert listed(response) == {active_card.number}


def test_search_with_other_text_finds_nothing(admin_client_, active_card):
    response = admin_client_.get(reverse(CHANGELIST), {"q": "hello"})
    assert response.status_code == 200
    assert listed(response) == set()


def test_change_page_shows_the_member_balance_and_latest_entries(admin_client_, active_card):
    member = active_card.member
    for i in range(12):
        loyalty_services.points_earn(program=member.program, member_id=member.pk, points=10 + i, reason=f"r{i}")
    response = admin_client_.get(change_url(active_card))
    assert response.status_code == 200
    html = response.content.decode()
    assert str(member) in html
    assert "186 available" in html  # 10 + 11 + ... + 21
    assert html.count('<tr><td><a href="/admin/loyalty/ledgerentry/') == 10
    assert ">r11<" in html
    assert ">r1<" not in html
    assert "Block" in html
    assert "Replace" in html


def test_change_page_of_an_unassigned_card_offers_assignment_and_blocking(admin_client_, unassigned_card):
    html = admin_client_.get(change_url(unassigned_card)).content.decode()
    assert reverse("admin:cards_card_assign", args=[unassigned_card.pk]) in html
    assert 'name="operation" value="block"' in html


def test_change_page_of_blocked_stock_offers_unblocking(admin_client_, unassigned_card, staff):
    services.card_block(card=unassigned_card, actor=staff)
    html = admin_client_.get(change_url(unassigned_card)).content.decode()
    assert 'name="operation" value="unblock"' in html
    assert reverse("admin:cards_card_assign", args=[unassigned_card.pk]) not in html
    assert reverse("admin:cards_card_replace", args=[unassigned_card.pk]) not in html


def test_change_page_lists_the_latest_20_events_read_only(admin_client_, active_card, staff):
    for _ in range(12):  # 24 events
        services.card_block(card=active_card, actor=staff)
        services.card_unblock(card=active_card)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client_.get(change_url(active_card))
    html = response.content.decode()
    assert html.count('<tr class="card-event card-event-') == 20
    assert html.count("card-event-blocked") == html.count("card-event-unblocked") == 10
    assert str(staff) in html
    assert "customer / system" in html  # the unblocks had no actor
    assert len([q for q in queries if "cards_cardevent" in q["sql"]]) == 1
    assert not [q for q in queries if "cards_cardevent" in q["sql"] and not q["sql"].startswith("SELECT")]


def test_history_link_leads_to_the_events_on_the_change_page(admin_client_, active_card):
    response = admin_client_.get(reverse("admin:cards_card_history", args=[active_card.pk]))
    assert response.status_code == 302
    assert response["Location"] == change_url(active_card) + "#card-events"


def test_posting_the_change_form_changes_nothing(admin_client_, active_card, other_member):
    response = admin_client_.post(
        change_url(active_card), {"status": "void", "member": other_member.pk, "number": "1", "_save": "Save"}
    )
    assert response.status_code in (200, 302)
    active_card.refresh_from_db()
    assert (active_card.status, active_card.member_id) == ("active", active_card.member_id)
    assert active_card.member_id != other_member.pk


def test_cards_cannot_be_added_or_deleted(admin_client_, active_card):
    assert admin_client_.get(reverse("admin:cards_card_add")).status_code == 403
    assert admin_client_.get(reverse("admin:cards_card_delete", args=[active_card.pk])).status_code == 403


def run_action(client, action: str, *cards: Card):
    return client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [c.pk for c in cards]}, follow=True)


def test_block_and_unblock_actions_call_the_services(admin_client_, staff, active_card, unassigned_card, program):
    void = CardFactory(program=program, status="void")
    response = run_action(admin_client_, "block", active_card, unassigned_card, void)
    active_card.refresh_from_db()
    unassigned_card.refresh_from_db()
    void.refresh_from_db()
    assert (active_card.status, unassigned_card.status, void.status) == ("blocked", "blocked", "void")
    assert (active_card.member_id is not None, unassigned_card.member_id) == (True, None)
    shown = [str(m) for m in response.context["messages"]]
    assert any("Blocked 2 cards" in m for m in shown)
    assert any(void.number in m for m in shown)  # the refusal is reported
    assert CardEvent.objects.filter(card=active_card, kind="blocked", actor=staff).exists()
    run_action(admin_client_, "unblock", active_card, unassigned_card)
    active_card.refresh_from_db()
    unassigned_card.refresh_from_db()
    assert (active_card.status, unassigned_card.status) == ("active", "unassigned")


def test_replace_action_blocks_the_card_and_keeps_the_balance(admin_client_, active_card):
    member = active_card.member
    loyalty_services.points_earn(program=member.program, member_id=member.pk, points=50)
    run_action(admin_client_, "replace", active_card)
    active_card.refresh_from_db()
    member.refresh_from_db()
    assert active_card.status == "blocked"
    assert active_card.replaced_by.member == member
    assert member.available == 50


def test_block_button_of_the_change_page(admin_client_, active_card):
    url = reverse("admin:cards_card_set_status", args=[active_card.pk])
    assert admin_client_.get(url).status_code == 405
    admin_client_.post(url, {"operation": "block"})
    active_card.refresh_from_db()
    assert active_card.status == "blocked"


def test_assign_page_assigns_through_the_service(admin_client_, unassigned_card, member):
    url = reverse("admin:cards_card_assign", args=[unassigned_card.pk])
    assert admin_client_.get(url).status_code == 200
    response = admin_client_.post(url, {"member": member.pk})
    assert response.status_code == 302
    unassigned_card.refresh_from_db()
    assert (unassigned_card.status, unassigned_card.member) == ("active", member)


def test_assign_page_refuses_a_member_of_another_program(admin_client_, unassigned_card):
    stranger = MemberFactory()
    response = admin_client_.post(
        reverse("admin:cards_card_assign", args=[unassigned_card.pk]), {"member": stranger.pk}
    )
    assert response.status_code == 200
    assert "No member with this id" in response.content.decode()
    unassigned_card.refresh_from_db()
    assert unassigned_card.status == "unassigned"


def test_assign_page_shows_the_refusal_for_an_assigned_card(admin_client_, active_card, other_member):
    response = admin_client_.post(
        reverse("admin:cards_card_assign", args=[active_card.pk]), {"member": other_member.pk}
    )
    assert response.status_code == 200
    assert "only an unassigned card can be assigned" in response.content.decode()


def test_replace_page_with_a_stock_card(admin_client_, active_card, unassigned_card):
    url = reverse("admin:cards_card_replace", args=[active_card.pk])
    assert admin_client_.get(url).status_code == 200
    response = admin_client_.post(url, {"new_number": unassigned_card.number})
    assert response.status_code == 302
    unassigned_card.refresh_from_db()
    assert unassigned_card.member_id == active_card.member_id


def test_replace_page_refuses_a_mistyped_stock_number(admin_client_, active_card, unassigned_card):
    bad = unassigned_card.number[:-1] + str((int(unassigned_card.number[-1]) + 1) % 10)
    response = admin_client_.post(reverse("admin:cards_card_replace", args=[active_card.pk]), {"new_number": bad})
    assert response.status_code == 200
    assert "not a valid card number" in response.content.decode()
    active_card.refresh_from_db()
    assert active_card.status == "active"
    assert numbers.is_well_formed(active_card.number)


def test_pages_need_the_change_permission(client, db, active_card):
    from tests.loyalty.factories import StaffFactory

    client.force_login(StaffFactory())  # staff without permissions
    assert client.get(reverse("admin:cards_card_replace", args=[active_card.pk])).status_code == 403
    client.post(reverse("admin:cards_card_set_status", args=[active_card.pk]), {"operation": "block"})
    active_card.refresh_from_db()
    assert active_card.status == "active"
