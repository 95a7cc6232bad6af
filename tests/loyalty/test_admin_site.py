"""The back-office a manager reads (issue 13, section 6): the installation's name, the dashboard
first, the navigation grouped by task with the plumbing only for owners, autocomplete pickers,
the member search (part of an email or a name, card numbers) and change lists that never count
a large table."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loyalty.admin import CappedCountPaginator
from loyalty.models import Member
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory, StaffFactory

pytestmark = pytest.mark.django_db


def staff_in(group_name: str, *perms: str):
    """A staff user in `group_name` holding `perms` ("app_label.codename")."""
    group, _ = Group.objects.get_or_create(name=group_name)
    for perm in perms:
        app_label, codename = perm.split(".")
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    user = StaffFactory()
    user.groups.add(group)
    return user


SUPPORT_PERMS = ("loyalty.view_member", "loyalty.change_member", "loyalty.view_ledgerentry", "cards.view_card")


def nav_groups(response) -> dict[str, list[str]]:
    return {group["name"]: [m["name"] for m in group["models"]] for group in response.context["available_apps"]}


def test_the_pages_carry_the_installations_name(client, settings):
    settings.LOYALTY_SITE_NAME = "Café Lumière back-office"
    page = client.get(reverse("admin:login")).content.decode()

    assert "<title>Log in | Café Lumière back-office</title>" in page
    assert "Café Lumière back-office" in page
    assert "Django administration" not in page
    assert "Django site admin" not in page


def test_the_first_page_after_login_is_the_dashboard(client):
    user = StaffFactory(is_superuser=True, password="pw-12345678")
    user.set_password("pw-12345678")
    user.save()
    response = client.post(
        reverse("admin:login"), {"username": user.username, "password": "pw-12345678", "next": "/admin/"}, follow=True
    )

    assert response.redirect_chain[-1][0] == reverse("dashboard:home")


def test_an_owner_sees_the_navigation_grouped_by_task_with_the_technical_group(client):
    owner = StaffFactory(is_superuser=True)
    client.force_login(owner)
    response = client.get(reverse("admin:sections"))
    groups = nav_groups(response)

    assert list(groups) == [
        "Members",
        "Cards",
        "Rewards",
        "Rules and automations",
        "Emails",
        "Reports",
        "Settings",
        "Technical",
    ]
    assert groups["Members"][:3] == ["Members", "Points history (ledger)", "Purchases and activities"]
    assert "Coupons" in groups["Rewards"]
    assert groups["Reports"] == ["Dashboard", "Reports"]
    assert {"Idempotency records", "Ledger job runs", "Crontabs", "Solar events", "Clocked"} <= set(groups["Technical"])
    assert "Scheduled jobs" in groups["Settings"]
    page = response.content.decode()
    assert f'href="{reverse("dashboard:home")}"' in page
    assert 'href="/admin/dashboard/reports/"' in page


def test_the_owner_group_sees_the_technical_group_without_being_superuser(client):
    owner = StaffFactory()
    owner.groups.add(Group.objects.get(name="Owner"))  # the group migration 0018 creates
    client.force_login(owner)
    groups = nav_groups(client.get(reverse("admin:sections")))

    assert "Idempotency records" in groups["Technical"]
    assert {"Members", "Cards", "Rewards", "Settings", "Reports"} <= set(groups)


def test_a_staff_user_sees_only_the_pages_of_their_permissions_and_no_plumbing(client):
    # Even a user given view rights on the plumbing does not get the Technical group.
    helpdesk = staff_in("Helpdesk", *SUPPORT_PERMS, "loyalty.view_idempotencyrecord")
    client.force_login(helpdesk)
    response = client.get(reverse("admin:sections"))
    groups = nav_groups(response)

    assert groups == {
        "Members": ["Members", "Points history (ledger)"],
        "Cards": ["Cards"],
        "Reports": ["Dashboard", "Reports"],
    }
    assert "Idempotency" not in response.content.decode()
    # The sidebar of every admin page is the same grouped list.
    sidebar = client.get(reverse("admin:loyalty_member_changelist"))
    assert nav_groups(sidebar) == groups


def test_the_support_group_sees_members_cards_coupons_and_no_settings(client):
    support = StaffFactory()
    support.groups.add(Group.objects.get(name="Support"))
    client.force_login(support)
    groups = nav_groups(client.get(reverse("admin:sections")))

    assert "Cards" in groups["Cards"]
    assert "Coupons" in groups["Rewards"]
    assert "Members" in groups["Members"]
    assert "Technical" not in groups
    assert "Settings" not in groups


def test_an_apps_own_page_still_lists_its_models(client):
    client.force_login(StaffFactory(is_superuser=True))
    response = client.get(reverse("admin:app_list", args=["loyalty"]))

    assert response.status_code == 200
    assert "Idempotency records" in response.content.decode()


def test_admin_forms_pick_programs_rewards_and_members_by_autocomplete(client, program):
    client.force_login(StaffFactory(is_superuser=True))
    for url_name in (
        "admin:loyalty_member_add",
        "admin:rewards_reward_add",
        "admin:workflows_earningrule_add",
        "admin:tiers_tier_add",
        "admin:loyalty_programapikey_add",
    ):
        page = client.get(reverse(url_name)).content.decode()
        assert re.search(r'<select name="program"[^>]*admin-autocomplete', page), url_name
    assert 'class="vForeignKeyRawIdAdminField' not in client.get(reverse("admin:loyalty_member_add")).content.decode()


def test_a_card_is_assigned_to_a_member_picked_by_name(client, program):
    client.force_login(StaffFactory(is_superuser=True))
    card = CardFactory(program=program)
    page = client.get(reverse("admin:cards_card_assign", args=[card.pk])).content.decode()

    assert re.search(r'<select name="member"[^>]*admin-autocomplete', page)
    assert "select2" in page  # the widget's scripts are on the page


def test_the_member_autocomplete_answers_a_part_of_a_name_with_email_and_id(client, program):
    client.force_login(StaffFactory(is_superuser=True))
    marie = MemberFactory(program=program, first_name="Marie", last_name="Dupont", email="marie.d@example.org")
    MemberFactory(program=program, first_name="Jean", last_name="Martin")
    response = client.get(
        reverse("admin:autocomplete"),
        {"term": "dupo", "app_label": "cards", "model_name": "card", "field_name": "member"},
    )

    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": str(marie.pk), "text": f"Marie Dupont <marie.d@example.org> · #{marie.pk}"}
    ]


@pytest.mark.parametrize(
    ("app_label", "model_name", "field_name", "term"),
    [
        ("loyalty", "member", "program", "prog"),
        ("rewards", "reward", "min_tier", "gold"),
        ("rewards", "redemption", "reward", "coffee"),
        ("cards", "card", "batch", "prog"),
        ("workflows", "automation", "set_tier", "gold"),
    ],
)
def test_the_autocomplete_endpoints_answer(client, program, app_label, model_name, field_name, term):
    client.force_login(StaffFactory(is_superuser=True))
    response = client.get(
        reverse("admin:autocomplete"),
        {"term": term, "app_label": app_label, "model_name": model_name, "field_name": field_name},
    )

    assert response.status_code == 200
    assert "results" in response.json()


# --- the member search --------------------------------------------------------------------------


@pytest.fixture
def people(program):
    return {
        "marie": MemberFactory(program=program, first_name="Marie", last_name="Dupont", email="marie.dupont@mail.fr"),
        "jean": MemberFactory(program=program, first_name="Jean", last_name="Martin", email="jm1970@exemple.com"),
        "lea": MemberFactory(program=program, first_name="Léa", last_name="Marchand", email="lea@shop.example"),
    }


def search(client, term: str) -> set[str]:
    response = client.get(reverse("admin:loyalty_member_changelist"), {"q": term})
    assert response.status_code == 200
    return {m.first_name for m in response.context["cl"].result_list}


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("dupont@mail", {"Marie"}),  # part of an email
        ("1970@EXEMPLE", {"Jean"}),  # any case
        ("@shop.example", {"Léa"}),
        ("upon", {"Marie"}),  # part of a last name
        ("MAR", {"Marie", "Jean", "Léa"}),  # first names and last names
        ("marie dup", {"Marie"}),  # every word must match
        ("ma", {"Marie", "Jean", "Léa"}),  # two letters: the beginning of a name
        ("ja", set()),
    ],
)
def test_members_are_found_by_part_of_an_email_or_a_name(client, people, term, found):
    client.force_login(StaffFactory(is_superuser=True))
    assert search(client, term) == found


@pytest.mark.parametrize("how", ["exact", "prefix", "spaced"])
def test_members_are_found_by_card_number(client, people, how):
    client.force_login(StaffFactory(is_superuser=True))
    card = CardFactory(member=people["lea"])
    CardFactory(member=people["jean"])
    term = {
        "exact": card.number,
        "prefix": card.number[:-2],
        "spaced": " ".join(card.number[i : i + 4] for i in range(0, len(card.number), 4)),
    }[how]

    assert "Léa" in search(client, term)
    assert search(client, card.number) == {"Léa"}


def test_members_are_found_by_id_and_external_id(client, people):
    client.force_login(StaffFactory(is_superuser=True))
    assert search(client, f"#{people['jean'].pk}") == {"Jean"}
    assert search(client, people["lea"].external_id) == {"Léa"}


def test_the_name_and_email_search_is_served_by_the_trigram_indexes(people):
    from loyalty.admin import member_search

    queryset = Member.objects.filter(member_search("dupont@mail")).order_by()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: ask which index could serve
        plan = queryset.explain()

    assert "member_email_trgm" in plan, plan


# --- change lists at scale ------------------------------------------------------------------------


def test_the_unfiltered_member_list_shows_the_estimate_without_counting(client, people, monkeypatch):
    client.force_login(StaffFactory(is_superuser=True))
    monkeypatch.setattr(CappedCountPaginator, "cap", 1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE loyalty_member")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:loyalty_member_changelist"))

    member_counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "loyalty_member" in q["sql"]]
    assert member_counts == []
    assert any("reltuples" in q["sql"] for q in queries)
    assert response.context["cl"].paginator.estimated
    assert "About 3 members (an estimate" in response.content.decode()


def test_a_searched_member_list_counts_at_most_the_cap(client, people, monkeypatch):
    client.force_login(StaffFactory(is_superuser=True))
    monkeypatch.setattr(CappedCountPaginator, "cap", 1)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:loyalty_member_changelist"), {"q": "ma"})

    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "loyalty_member" in q["sql"]]
    assert counts
    assert all("LIMIT 2" in sql.upper() for sql in counts), counts
    assert "More than 1 members" in response.content.decode()


def test_large_change_lists_have_no_date_hierarchy_and_join_what_they_show():
    from django.contrib import admin

    from loyalty.admin import LargeTableAdmin

    for model, model_admin in admin.site._registry.items():
        if isinstance(model_admin, LargeTableAdmin):
            assert model_admin.date_hierarchy is None, model
            assert model_admin.show_full_result_count is False, model


# --- scheduled jobs in words ----------------------------------------------------------------------


@time_machine.travel(dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC), tick=False)  # winter offsets
def test_scheduled_jobs_read_as_sentences_in_the_programs_time_zones(client):
    from tests.loyalty.factories import ProgramFactory

    ProgramFactory(name="Café Lumière", timezone="Europe/Paris")
    ProgramFactory(name="Brooklyn Beans", timezone="America/New_York")
    client.force_login(StaffFactory(is_superuser=True))
    response = client.get(reverse("admin:django_celery_beat_periodictask_changelist"))
    rows = {
        task.name: (model_admin.when(task), model_admin.in_program_time(task))
        for model_admin in [response.context["cl"].model_admin]
        for task in response.context["cl"].result_list
    }

    assert rows["Run daily automations"][0] == "every day at 03:00, UTC"
    assert "04:00 in Europe/Paris (Café Lumière)" in rows["Run daily automations"][1]
    assert "22:00 the day before in America/New_York (Brooklyn Beans)" in rows["Run daily automations"][1]
    assert rows["Release pending points"] == ("every 15 minutes", "-")
    assert rows["Expire points"][0] == "every hour at 5 minutes past"
    page = response.content.decode()
    assert "Runs the daily automations." in page
    assert "every day at 03:00, UTC" in page


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        (("0", "3", "*", "*", "*"), "every day at 03:00, Europe/Paris"),
        (("30", "8,20", "*", "*", "*"), "every day at 08:30 and 20:30, Europe/Paris"),
        (("0", "9", "*", "*", "1"), "every Monday at 09:00, Europe/Paris"),
        (("0", "9", "*", "*", "1,3"), "every Monday and Wednesday at 09:00, Europe/Paris"),
        (("15", "6", "1", "*", "*"), "on day 1 of every month at 06:15, Europe/Paris"),
        (("*/10", "*", "*", "*", "*"), "every 10 minutes"),
    ],
)
def test_crontabs_in_words(cron, words):
    from django_celery_beat.models import CrontabSchedule

    from loyalty.admin.schedules import crontab_in_words

    minute, hour, dom, moy, dow = cron
    schedule = CrontabSchedule(
        minute=minute, hour=hour, day_of_month=dom, month_of_year=moy, day_of_week=dow, timezone="Europe/Paris"
    )
    assert crontab_in_words(schedule) == words


def test_the_ledger_filter_on_a_rare_kind_is_served_by_an_index(db):
    from loyalty.models import LedgerEntry

    queryset = LedgerEntry.objects.filter(kind="reversal").order_by("-id")[:50]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = on")
        plan = queryset.explain()

    assert "entry_kind_recent" in plan, plan


def test_a_scheduled_jobs_page_says_its_crontab_in_words_without_an_inline_script(client):
    from django_celery_beat.models import PeriodicTask

    client.force_login(StaffFactory(is_superuser=True))
    task = PeriodicTask.objects.get(name="Run daily automations")
    page = client.get(reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])).content.decode()

    assert "every day at 03:00, UTC" in page
    assert "admin/loyalty/crontab_in_words.js" in page
    assert 'id="readable-crontabs"' in page
    assert "<script>" not in page
    assert 'id="periodic-task-overrides"' not in page  # the library's inline script
