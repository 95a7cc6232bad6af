"""Staff limited to programs, on every admin page (docs/back-office.md, "Roles and programs").

Two brands come from `load_demo` (Demo Coffee Roasters and Demo Espresso Bar, with members,
ledger, cards, tiers, rewards, rules, automations, referrals and emails), plus the rows the demo
does not make (API keys, deletion requests, imports, webhooks, email templates). A member of
staff limited to the Espresso Bar walks every ModelAdmin of `admin.site._registry` that holds
program data: the change list shows the bar's rows and none of the roasters' (nor their name, in
a filter or anywhere), the roasters' change pages answer 404, and the autocompletes leave them
out. The custom pages (batches, imports and exports, the email editor, the outbox, posting pages,
card images...) are checked one by one."""

from __future__ import annotations

import io

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cards import importing
from cards.models import Card, CardBatch, MemberImport
from loyalty import services, staff_scope
from loyalty.admin import ProgramScopedAdmin, program_path_of
from loyalty.models import Activity, AdjustmentRequest, Member, MemberNote, Program, StaffAction, StaffProgram
from notifications import emails
from notifications.models import EmailSuppression, WebhookDelivery
from rewards import services as rewards_services
from rewards.models import Redemption, Reward
from tests.loyalty.factories import ProgramFactory, StaffFactory
from tests.notifications.factories import WebhookEndpointFactory
from workflows.models import Automation, AutomationRun, BudgetCut, FraudLimits, ProgramBudget, ReviewHold

pytestmark = pytest.mark.slow


def _top_up(program: Program, staff) -> None:
    """What `load_demo` does not make, for one program."""
    member = Member.objects.filter(program=program, email__contains="@").order_by("pk").first()
    services.api_key_create(program=program, name=f"Shop of {program.slug}")
    services.deletion_request_create(member=member)
    importing.member_import_dry_run(
        program=program, file_name="members.csv", data=b"external_id,email\nimp-1,imp-1@example.com\n", actor=staff
    )
    endpoint = WebhookEndpointFactory(program=program, events=[])
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_key=f"test:{program.slug}",
        event_type="webhook.test",
        body="{}",
        status=WebhookDelivery.Status.FAILED,
        created_at=timezone.now(),
    )
    emails.email_template_save(
        program=program,
        kind="welcome",
        language="en",
        subject="Hello from {{ program.name }}",
        html_body="",
        text_body="",
    )
    reward = Reward.objects.filter(program=program, is_active=True).order_by("pk").first()
    rewards_services.reward_gift(
        program=program, member=member, reward=reward, reason="Sorry for the wait", idempotency_key=f"gift-{program.pk}"
    )
    automation = Automation.objects.filter(program=program).order_by("pk").first()
    AutomationRun.objects.get_or_create(
        automation=automation, member=member, period_key="once", defaults={"fired_at": timezone.now(), "points": 5}
    )
    ProgramBudget.objects.get_or_create(program=program, defaults={"budget_total": 1_000_000})
    BudgetCut.objects.create(
        program=program,
        member=member,
        automation=automation,
        budget_scope="automation",
        wanted=100,
        given=0,
        reason="Budget of automation used up",
        at=timezone.now(),
    )
    services.staff_action_record(
        actor=staff, action=StaffAction.Action.ADJUST, program=program, member=member, reason="Goodwill"
    )
    MemberNote.objects.create(
        program=program, member=member, author=staff, text="Called about a missing order", created_at=timezone.now()
    )
    FraudLimits.objects.get_or_create(program=program)
    if not ReviewHold.objects.filter(program=program).exists():
        activity = Activity.objects.filter(program=program, member=member).order_by("pk").first()
        ReviewHold.objects.create(
            program=program,
            member=member,
            activity=activity,
            reason="same_amount",
            points=10,
            created_at=timezone.now(),
        )
    AdjustmentRequest.objects.create(
        program=program,
        member=member,
        points=50_000,
        reason="Store closure",
        key=f"scope-{program.pk}",
        requested_by=staff,
        requested_at=timezone.now(),
    )


@pytest.fixture
def brands(db):
    """(mine, theirs): the Espresso Bar (the limited user's) and the Coffee Roasters."""
    call_command("load_demo", members=8, stdout=io.StringIO())
    staff = StaffFactory(is_superuser=True)
    mine, theirs = Program.objects.get(slug="demo-bar"), Program.objects.get(slug="demo")
    for program in (mine, theirs):
        _top_up(program, staff)
    return mine, theirs


def limited_user(program: Program, group: str = "Owner"):
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=group))
    StaffProgram.objects.create(user=user, program=program)
    return user


def scoped_admins():
    return [(model, ma) for model, ma in admin.site._registry.items() if program_path_of(model) is not None]


def ids_of(model, path: str, program: Program) -> set:
    return set(model._default_manager.filter(**{f"{path}__in": [program.pk]}).values_list("pk", flat=True))


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def source_field(target):
    """A foreign key of any model pointing to `target` (for the autocomplete view)."""
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if getattr(field, "many_to_one", False) and field.concrete and field.related_model is target:
                return field
    return None


# --- every admin with program data ------------------------------------------------------------


def test_every_program_admin_shows_a_brand_only_its_own_rows(client, brands):
    mine, theirs = brands
    client.force_login(limited_user(mine))
    problems, autocompletes = [], 0
    for model, model_admin in scoped_admins():
        name, path = model.__name__, model_admin.program_path
        own, other = ids_of(model, path, mine), ids_of(model, path, theirs)
        if not own or not other:
            problems.append(f"{name}: the fixture made no rows in both programs (extend _top_up)")
            continue
        response = client.get(url(model, "changelist"), follow=True)  # approvals open on the pending
        if response.status_code != 200:
            problems.append(f"{name}: change list answered {response.status_code}")
            continue
        shown = set(response.context["cl"].queryset.values_list("pk", flat=True))
        if shown & other:
            problems.append(f"{name}: change list shows the other program's rows")
        if not own <= shown:
            problems.append(f"{name}: change list hides rows of the user's program")
        if theirs.name in response.content.decode():
            problems.append(f"{name}: change list names the other program (a filter?)")
        other_pk = min(other)
        if (status := client.get(url(model, "change", other_pk)).status_code) != 404:
            problems.append(f"{name}: the other program's change page answered {status}")
        if (status := client.get(url(model, "change", min(own))).status_code) not in (200, 302):
            problems.append(f"{name}: an own change page answered {status}")
        deletable = model_admin.has_delete_permission(response.wsgi_request)
        if deletable and (status := client.get(url(model, "delete", other_pk)).status_code) != 404:
            problems.append(f"{name}: the other program's delete page answered {status}")
        if (status := client.get(url(model, "history", other_pk)).status_code) != 404:
            problems.append(f"{name}: the other program's history page answered {status}")
        field = source_field(model)
        if model_admin.search_fields and field is not None:
            answer = client.get(
                reverse("admin:autocomplete"),
                {
                    "app_label": field.model._meta.app_label,
                    "model_name": field.model._meta.model_name,
                    "field_name": field.name,
                    "term": "",
                },
            )
            autocompletes += 1
            found = {int(r["id"]) for r in answer.json()["results"]} if answer.status_code == 200 else set()
            if answer.status_code != 200 or found & other or not found:
                problems.append(f"{name}: autocomplete answered {answer.status_code} with {sorted(found)[:5]}")
    assert problems == []
    assert autocompletes >= 10  # members, programs, cards, tiers, rewards, rules... (no silent skip)


def test_every_admin_of_a_model_with_a_program_is_scoped():
    """A model that reaches a program through its foreign keys (two steps at most) holds program
    data: its admin must be a ProgramScopedAdmin whose path leads to the program."""

    def reaches_program(model, depth=2) -> bool:
        for field in model._meta.get_fields():
            if not (getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False)) or not field.concrete:
                continue
            if field.related_model is Program or (depth > 1 and reaches_program(field.related_model, depth - 1)):
                return True
        return False

    forgotten, wrong = [], []
    for model, model_admin in admin.site._registry.items():
        if model is Program:
            assert isinstance(model_admin, ProgramScopedAdmin)
            assert model_admin.program_path == "pk"
            continue
        if not reaches_program(model):
            continue
        if not isinstance(model_admin, ProgramScopedAdmin):
            forgotten.append(model.__name__)
            continue
        last = get_fields_from_path(model, model_admin.program_path)[-1]
        if last.related_model is not Program:
            wrong.append(f"{model.__name__}: {model_admin.program_path}")
    assert forgotten == [], "admins of program data that are not ProgramScopedAdmin"
    assert wrong == [], "program paths that do not end at the program"


# --- the custom pages -------------------------------------------------------------------------


def test_custom_pages_refuse_the_other_program(client, brands):
    mine, theirs = brands
    client.force_login(limited_user(mine))
    their_member = Member.objects.filter(program=theirs, email__contains="@").order_by("pk").first()
    their_card = Card.objects.filter(program=theirs, member__isnull=False).order_by("pk").first()
    their_batch = CardBatch.objects.get(program=theirs)
    their_import = MemberImport.objects.get(program=theirs)
    their_endpoint = theirs.webhook_endpoints.get()
    gets = [
        reverse("admin:loyalty_member_adjust_points", args=[their_member.pk]),
        reverse("admin:loyalty_member_transfer_points", args=[their_member.pk]),
        reverse("admin:cards_card_assign", args=[their_card.pk]),
        reverse("admin:cards_card_replace", args=[their_card.pk]),
        reverse("cards:card_qr", args=[their_card.number]),
        reverse("cards:card_barcode", args=[their_card.number]),
        reverse("admin:cards_cardbatch_progress", args=[their_batch.pk]),
        reverse("admin:cards_cardbatch_csv", args=[their_batch.pk]),
        reverse("admin:cards_cardbatch_pdf", args=[their_batch.pk]),
        reverse("admin:cards_memberimport_file", args=[their_import.pk]),
        reverse("admin:cards_memberimport_export_csv", args=[theirs.pk]),
        reverse("admin:tiers_membertier_set", args=[their_member.pk]),
        reverse("admin:rewards_redemption_redeem", args=[their_member.pk]),
        reverse("admin:notifications_emailtemplate_overview", args=[theirs.pk]),
        reverse("admin:notifications_emailtemplate_editor", args=[theirs.pk, "welcome", "en"]),
    ]
    posts = [
        reverse("admin:cards_card_set_status", args=[their_card.pk]),
        reverse("admin:cards_cardbatch_resume", args=[their_batch.pk]),
        reverse("admin:cards_cardbatch_discard", args=[their_batch.pk]),
        reverse("admin:cards_cardbatch_build_pdf", args=[their_batch.pk]),
        reverse("admin:cards_memberimport_apply", args=[their_import.pk]),
        reverse("admin:notifications_webhookendpoint_send_test", args=[their_endpoint.pk]),
        reverse("admin:notifications_webhookendpoint_rotate_secret", args=[their_endpoint.pk]),
        reverse("admin:notifications_emailtemplate_preview", args=[theirs.pk, "welcome", "en"]),
    ]
    answers = {u: client.get(u).status_code for u in gets}
    answers |= {u: client.post(u, {"operation": "block"}).status_code for u in posts}

    assert {u: s for u, s in answers.items() if s != 404} == {}
    their_batch.refresh_from_db()
    assert their_batch.status == CardBatch.Status.DONE  # nothing was discarded
    assert Card.objects.get(pk=their_card.pk).status == their_card.status


def test_custom_pages_offer_only_the_users_programs(client, brands):
    mine, theirs = brands
    client.force_login(limited_user(mine))
    pages = [
        reverse("admin:cards_cardbatch_add"),
        reverse("admin:cards_memberimport_add"),
        reverse("admin:cards_memberimport_export"),
        reverse("admin:workflows_earningrule_preview"),
        reverse("admin:workflows_automation_install_ready_made"),
        reverse("admin:notifications_emailtemplate_changelist"),
        reverse("admin:notifications_emailtemplate_overview", args=[mine.pk]),
        reverse("admin:loyalty_member_add"),
        reverse("admin:workflows_earningrule_add"),
        reverse("admin:rewards_reward_add"),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert mine.name in html, page
        assert theirs.name not in html, page

    # A program typed in by hand is refused, and nothing is made.
    batches = CardBatch.objects.count()
    response = client.post(reverse("admin:cards_cardbatch_add"), {"program": theirs.pk, "quantity": 3})
    assert response.status_code == 200
    assert "program" in response.context["form"].errors
    assert CardBatch.objects.count() == batches
    response = client.get(reverse("admin:workflows_earningrule_preview"), {"program": theirs.pk, "member": "1"})
    assert "program" in response.context["form"].errors

    # "Install built-in rules" touches the user's programs only.
    theirs.earning_rules.filter(builtin__gt="").delete()
    client.post(reverse("admin:workflows_earningrule_install_builtins"))
    assert not theirs.earning_rules.filter(builtin__gt="").exists()


def test_searches_and_the_suppression_list_leave_the_other_program_out(client, brands):
    mine, theirs = brands
    client.force_login(limited_user(mine))
    their_member = Member.objects.filter(program=theirs, email__contains="@").order_by("pk").first()
    my_member = Member.objects.filter(program=mine, email__contains="@").order_by("pk").first()
    EmailSuppression.objects.all().delete()
    for address in (their_member.email, my_member.email):
        emails.suppression_add(email=address, reason=EmailSuppression.Reason.STAFF)

    for changelist in ("loyalty_member", "cards_card", "notifications_emailmessage"):
        found = client.get(reverse(f"admin:{changelist}_changelist"), {"q": their_member.email})
        assert found.context["cl"].result_count == 0, changelist
    shown = client.get(reverse("admin:notifications_emailsuppression_changelist")).context["cl"].queryset
    assert set(shown.values_list("email", flat=True)) == {my_member.email}


def test_a_limited_user_cannot_widen_their_programs(client, brands):
    mine, _theirs = brands
    owner = limited_user(mine)
    client.force_login(owner)

    assert client.get(reverse("admin:loyalty_program_add")).status_code == 403
    page = client.get(reverse("admin:auth_user_change", args=[owner.pk]))
    assert page.status_code == 200
    assert 'name="staff_programs-0-program"' not in page.content.decode()  # shown, not editable
    assert client.get(reverse("admin:auth_user_add")).status_code == 403
    assert client.post(reverse("admin:auth_user_change", args=[owner.pk]), {"is_superuser": "on"}).status_code == 403
    group = Group.objects.get(name="Owner")
    assert client.post(reverse("admin:auth_group_change", args=[group.pk]), {"name": "x"}).status_code == 403


# --- programs_for ------------------------------------------------------------------------------


def test_programs_for_superusers_unassigned_and_limited_staff(db, django_assert_num_queries):
    one, two = ProgramFactory(), ProgramFactory()
    limited = StaffFactory()
    StaffProgram.objects.create(user=limited, program=two)

    assert set(staff_scope.programs_for(StaffFactory(is_superuser=True))) == {one, two}
    assert set(staff_scope.programs_for(StaffFactory())) == {one, two}
    assert list(staff_scope.programs_for(StaffFactory(is_staff=False))) == []
    with django_assert_num_queries(1):  # asked once, then cached on the user object
        for _ in range(3):
            ids = staff_scope.program_ids_for(limited)
            members = Member.objects.filter(program__in=staff_scope.programs_for(limited))
    assert ids == [two.pk]
    with CaptureQueriesContext(connection) as queries:
        list(members)
    assert len(queries) == 1
    assert "staffprogram" not in queries[0]["sql"]
    assert list(staff_scope.programs_for(limited)) == [two]


# --- roles ---------------------------------------------------------------------------------------


def test_support_looks_up_cards_coupons_and_tiers_but_no_settings(client, brands):
    mine, _ = brands
    support = StaffFactory()
    support.groups.add(Group.objects.get(name="Support"))
    client.force_login(support)
    card = Card.objects.filter(program=mine, member__isnull=False).order_by("pk").first()
    coupon = Redemption.objects.filter(program=mine).order_by("pk").first()
    tier = mine.tiers.order_by("pk").first()
    allowed = [
        reverse("admin:loyalty_member_changelist"),
        reverse("admin:loyalty_member_change", args=[card.member_id]),
        reverse("admin:loyalty_member_adjust_points", args=[card.member_id]),  # the limit is elsewhere
        reverse("admin:cards_card_changelist"),
        reverse("admin:cards_card_change", args=[card.pk]),
        reverse("admin:cards_card_replace", args=[card.pk]),
        reverse("cards:card_qr", args=[card.number]),
        reverse("admin:rewards_redemption_changelist"),
        reverse("admin:rewards_redemption_change", args=[coupon.pk]),
        reverse("admin:rewards_redemption_redeem", args=[card.member_id]),
        reverse("admin:tiers_tier_changelist"),
        reverse("admin:tiers_tier_change", args=[tier.pk]),
        reverse("admin:tiers_membertier_changelist"),
        reverse("admin:tiers_tierchange_changelist"),
        reverse("admin:loyalty_ledgerentry_changelist"),
        reverse("admin:notifications_emailmessage_changelist"),
    ]
    refused = [
        reverse("admin:loyalty_program_changelist"),
        reverse("admin:loyalty_program_change", args=[mine.pk]),
        reverse("admin:loyalty_member_transfer_points", args=[card.member_id]),
        reverse("admin:rewards_reward_add"),
        reverse("admin:rewards_rewardsettings_change", args=[mine.pk]),
        reverse("admin:workflows_earningrule_add"),
        reverse("admin:workflows_referralsettings_change", args=[mine.pk]),
        reverse("admin:notifications_emailsettings_changelist"),
        reverse("admin:notifications_emailtemplate_editor", args=[mine.pk, "welcome", "en"]),
        reverse("admin:cards_cardbatch_add"),
        reverse("admin:cards_memberimport_changelist"),
        reverse("admin:tiers_tier_add"),
        reverse("admin:tiers_membertier_set", args=[card.member_id]),
        reverse("admin:loyalty_programapikey_changelist"),
        reverse("admin:auth_user_changelist"),
    ]
    assert {u: s for u in allowed if (s := client.get(u).status_code) != 200} == {}
    assert {u: s for u in refused if (s := client.get(u).status_code) != 403} == {}
    tier_page = client.get(reverse("admin:tiers_tier_change", args=[tier.pk])).content.decode()
    assert 'name="_save"' not in tier_page  # looked up, not changed


def test_a_manager_changes_program_settings_rules_rewards_and_emails(client, brands):
    mine, _ = brands
    manager = StaffFactory()
    manager.groups.add(Group.objects.get(name="Manager"))
    client.force_login(manager)
    pages = [
        reverse("admin:loyalty_program_change", args=[mine.pk]),
        reverse("admin:workflows_earningrule_add"),
        reverse("admin:workflows_automation_add"),
        reverse("admin:rewards_reward_add"),
        reverse("admin:rewards_rewardsettings_change", args=[mine.pk]),
        reverse("admin:tiers_tier_add"),
        reverse("admin:cards_cardbatch_add"),
        reverse("admin:cards_memberimport_add"),
        reverse("admin:notifications_emailsettings_changelist"),
        reverse("admin:notifications_emailtemplate_editor", args=[mine.pk, "welcome", "en"]),
        reverse("admin:loyalty_member_transfer_points", args=[Member.objects.filter(program=mine).first().pk]),
    ]
    assert {u: s for u in pages if (s := client.get(u).status_code) != 200} == {}
    program_page = client.get(pages[0]).content.decode()
    assert 'name="_save"' in program_page
    assert client.get(reverse("admin:loyalty_program_add")).status_code == 403  # owners add programs
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403


def test_the_role_groups_are_named_exactly(db):
    assert {"Owner", "Manager", "Support"} <= set(Group.objects.values_list("name", flat=True))
    assert not Group.objects.filter(name__in=["owner", "manager", "support"]).exists()


def test_staff_role_command_assigns_a_role_and_programs(db):
    one, two = ProgramFactory(slug="one"), ProgramFactory(slug="two")
    user = StaffFactory(username="alice", is_staff=False)
    out = io.StringIO()

    call_command("staff_role", "alice", "Support", "--programs", "one,two", stdout=out)
    user.refresh_from_db()
    assert user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == ["Support"]
    assert set(StaffProgram.objects.filter(user=user).values_list("program__slug", flat=True)) == {"one", "two"}
    assert "alice" in out.getvalue()

    call_command("staff_role", "alice", "Manager", "--all-programs", stdout=out)
    assert list(user.groups.values_list("name", flat=True)) == ["Manager"]
    assert not StaffProgram.objects.filter(user=user).exists()
    assert set(staff_scope.programs_for(user)) == {one, two}


def test_the_demo_brand_manager_sees_one_brand(client, brands):
    mine, theirs = brands
    user = StaffProgram.objects.get(user__username="demo-bar-manager").user
    client.force_login(user)

    page = client.get(reverse("admin:loyalty_member_changelist"))
    assert set(page.context["cl"].queryset.values_list("program_id", flat=True)) == {mine.pk}
    assert client.get(reverse("admin:loyalty_program_change", args=[theirs.pk])).status_code == 404
