"""Drafts in the admin (docs/drafts.md): start from the program's page, edit an item with its
form, see live and draft side by side, publish with a note, restore a version; the permission
to publish; staff limited to one program never reach another's draft."""

from __future__ import annotations

import zoneinfo

import pytest
from django.contrib.auth.models import Group, Permission
from django.forms import CheckboxInput, CheckboxSelectMultiple, SelectMultiple
from django.urls import reverse
from django.utils import timezone

from loyalty.models import StaffProgram
from programfiles import services
from programfiles.export import dumps
from programfiles.forms import DraftItemForm
from programfiles.models import ProgramDraft, ProgramVersion
from programfiles.selectors import sections_of
from tests.loyalty.factories import StaffFactory
from tests.programfiles.builders import build_program
from workflows.models import EarningRule

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _public_urls(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True


@pytest.fixture
def shop():
    return build_program()


def staff_in(group: str, program=None):
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=group))
    if program is not None:
        StaffProgram.objects.create(user=user, program=program)
    return user


def draft_url(draft, view: str = "change", *args) -> str:
    return reverse(f"admin:programfiles_programdraft_{view}", args=[draft.pk, *args])


def post_data(form: DraftItemForm, zone: str = "Europe/Paris", **changes) -> dict:
    """What the browser would send for the form as shown (dates in the program's time zone),
    with `changes` typed in."""
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        return _post_data(form, **changes)


def _post_data(form: DraftItemForm, **changes) -> dict:
    data: dict = {}
    for bound in form:
        value = bound.value()
        widget = bound.field.widget
        if isinstance(widget, CheckboxInput):
            if value:
                data[bound.name] = "on"
        elif isinstance(widget, (CheckboxSelectMultiple, SelectMultiple)):
            data[bound.name] = [str(v) for v in value or []]
        elif value is not None:
            data[bound.name] = widget.format_value(value) or ""
    data.update(changes)
    return data


def test_a_manager_starts_edits_and_publishes_a_draft_in_the_admin(client, shop):
    manager = staff_in("Manager")
    client.force_login(manager)
    program_page = client.get(reverse("admin:loyalty_program_change", args=[shop.pk])).content.decode()
    assert "Start a draft" in program_page

    started = client.post(reverse("admin:programfiles_programdraft_start", args=[shop.pk]))
    draft = ProgramDraft.objects.get(program=shop, status="open")
    assert started["Location"] == draft_url(draft)
    assert "Open the draft" in client.get(reverse("admin:loyalty_program_change", args=[shop.pk])).content.decode()

    item = next(r for r in draft.sections["earning_rules"] if r["code"] == "double-weekend")
    form = DraftItemForm(section="earning_rules", sections=draft.sections, item=item)
    edit_url = draft_url(draft, "item", "earning_rules") + "?key=double-weekend"
    assert "Double weekend" in client.get(edit_url).content.decode()
    saved = client.post(edit_url, post_data(form, multiplier="3", name="Triple weekend"))
    assert saved.status_code == 302, saved.context["form"].errors if saved.context else saved

    page = client.get(draft_url(draft)).content.decode()
    assert "Changes in this draft (2)" in page
    assert "double-weekend.multiplier" in page
    assert "Triple weekend" in page
    assert EarningRule.objects.get(program=shop, code="double-weekend").multiplier == 2  # not live

    published = client.post(draft_url(draft, "publish"), {"note": "Weekend x3"})

    version = ProgramVersion.objects.get(program=shop)
    assert published["Location"] == reverse("admin:programfiles_programversion_change", args=[version.pk])
    assert (version.note, version.published_by) == ("Weekend x3", manager)
    live = EarningRule.objects.get(program=shop, code="double-weekend")
    assert (live.multiplier, live.name) == (3, "Triple weekend")
    version_page = client.get(published["Location"]).content.decode()
    assert "double-weekend.multiplier" in version_page
    assert "Restore as a new draft" in version_page


def test_a_new_rule_is_added_with_a_code_made_from_its_name(client, shop):
    client.force_login(staff_in("Manager"))
    draft = services.draft_start(program=shop, actor=StaffFactory())
    form = DraftItemForm(section="earning_rules", sections=draft.sections, item=None)
    data = post_data(form, name="Double points weekend", trigger="purchase", kind="per_amount", multiplier="2")
    data["conditions__days_of_week"] = ["5", "6"]

    response = client.post(draft_url(draft, "item", "earning_rules"), data)

    assert response.status_code == 302, response.context["form"].errors
    draft.refresh_from_db()
    rule = next(r for r in draft.sections["earning_rules"] if r["name"] == "Double points weekend")
    assert (rule["code"], rule["multiplier"], rule["conditions"]["days_of_week"]) == (
        "double-points-weekend",
        2,
        [5, 6],
    )


def test_an_item_the_draft_would_refuse_shows_the_problem_at_its_field(client, shop):
    client.force_login(staff_in("Manager"))
    draft = services.draft_start(program=shop, actor=StaffFactory())
    item = next(a for a in draft.sections["automations"] if a["code"] == "gold-gift")
    form = DraftItemForm(section="automations", sections=draft.sections, item=item)

    response = client.post(
        draft_url(draft, "item", "automations") + "?key=gold-gift", post_data(form, actions__email_body="")
    )

    assert response.status_code == 200
    assert "An email needs both a subject and a body." in str(response.context["form"].errors)
    draft.refresh_from_db()
    assert draft.sections == sections_of(draft.base)


def test_edit_as_yaml_saves_the_draft_or_lists_the_problems(client, shop):
    client.force_login(staff_in("Manager"))
    draft = services.draft_start(program=shop, actor=StaffFactory())
    url = draft_url(draft, "yaml")
    text = client.get(url).context["form"]["text"].value()
    assert "double-weekend" in text

    refused = client.post(url, {"text": text.replace("name: Gold\n", "name: Gold\n  colour: red\n", 1)})
    assert "tiers[0].colour: unknown key" in refused.content.decode()

    sections = sections_of(draft.sections)
    next(r for r in sections["earning_rules"] if r["code"] == "double-weekend")["multiplier"] = 4
    saved = client.post(url, {"text": dumps({"version": 1, **sections})})

    assert saved.status_code == 302
    draft.refresh_from_db()
    assert next(r for r in draft.sections["earning_rules"] if r["code"] == "double-weekend")["multiplier"] == 4


def test_a_stale_draft_shows_what_changed_live_and_is_not_published(client, shop):
    manager = staff_in("Manager")
    client.force_login(manager)
    draft = services.draft_start(program=shop, actor=manager)
    rule = EarningRule.objects.get(program=shop, code="double-weekend")
    rule.priority = 99
    rule.save()

    page = client.get(draft_url(draft)).content.decode()
    assert "The live configuration changed since this draft was taken." in page
    assert "double-weekend.priority" in page

    response = client.post(draft_url(draft, "publish"), {"note": "late"}, follow=True)

    assert "changed since this draft was taken" in response.content.decode()
    assert not ProgramVersion.objects.exists()

    updated = client.post(draft_url(draft, "rebase"), follow=True).content.decode()

    assert "with your edits kept" in updated
    assert "The live configuration changed since this draft was taken." not in updated


def test_publishing_and_restoring_need_the_publish_permission(client, shop):
    editor = staff_in("Manager")
    editor.groups.clear()
    for codename in ("view_programdraft", "change_programdraft", "view_programversion"):
        editor.user_permissions.add(*Permission.objects.filter(codename=codename))
    draft = services.draft_start(program=shop, actor=editor)
    client.force_login(editor)

    assert client.get(draft_url(draft)).status_code == 200
    assert client.post(draft_url(draft, "publish"), {"note": "x"}).status_code == 403
    assert not ProgramVersion.objects.exists()

    version = services.draft_publish(draft=draft, actor=StaffFactory(is_superuser=True))
    restore = reverse("admin:programfiles_programversion_restore", args=[version.pk])
    assert client.post(restore).status_code == 403
    assert not ProgramDraft.objects.filter(status="open").exists()


def test_support_neither_sees_nor_edits_drafts(client, shop):
    draft = services.draft_start(program=shop, actor=StaffFactory())
    client.force_login(staff_in("Support"))

    assert client.get(draft_url(draft)).status_code == 403
    assert client.post(draft_url(draft, "publish")).status_code == 403
    assert client.post(reverse("admin:programfiles_programdraft_start", args=[shop.pk])).status_code == 403


def test_the_roles_hold_the_drafts_permissions():
    for role in ("Owner", "Manager"):
        codenames = set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))
        assert {"publish_programdraft", "change_programdraft", "view_programversion"} <= codenames
    support = set(Group.objects.get(name="Support").permissions.values_list("codename", flat=True))
    assert "publish_programdraft" not in support


def test_another_programs_draft_and_versions_are_refused(client, shop):
    other = build_program(slug="other-shop")
    theirs = services.draft_start(program=other, actor=StaffFactory())
    version = services.draft_publish(draft=theirs, actor=StaffFactory(is_superuser=True))
    theirs = services.draft_start(program=other, actor=StaffFactory())
    client.force_login(staff_in("Owner", program=shop))

    for url in (
        draft_url(theirs),
        draft_url(theirs, "item", "earning_rules") + "?key=double-weekend",
        draft_url(theirs, "yaml"),
        reverse("admin:programfiles_programversion_change", args=[version.pk]),
    ):
        assert client.get(url).status_code == 404, url
    for url in (
        draft_url(theirs, "publish"),
        draft_url(theirs, "discard"),
        draft_url(theirs, "remove", "earning_rules"),
        reverse("admin:programfiles_programversion_restore", args=[version.pk]),
        reverse("admin:programfiles_programdraft_start", args=[other.pk]),
    ):
        assert client.post(url, {"key": "double-weekend"}).status_code == 404, url
    theirs.refresh_from_db()
    assert theirs.status == "open"
    assert ProgramVersion.objects.filter(program=other).count() == 1
    listed = client.get(reverse("admin:programfiles_programdraft_changelist"))
    assert theirs not in listed.context["cl"].queryset


def test_campaign_dates_are_typed_in_the_programs_time_zone(client, shop):
    client.force_login(staff_in("Manager"))
    draft = services.draft_start(program=shop, actor=StaffFactory())
    item = next(r for r in draft.sections["earning_rules"] if r["code"] == "double-weekend")
    form = DraftItemForm(section="earning_rules", sections=draft.sections, item=item, zone=shop.timezone)
    assert "Time zone: Europe/Paris." in form.fields["campaign__starts_at"].help_text
    url = draft_url(draft, "item", "earning_rules") + "?key=double-weekend"
    assert 'value="2026-12-01 01:00:00"' in client.get(url).content.decode()  # 00:00 UTC is 01:00 in Paris

    client.post(url, post_data(form, campaign__starts_at="2026-12-02 00:00:00"))

    draft.refresh_from_db()
    assert next(r for r in draft.sections["earning_rules"] if r["code"] == "double-weekend")["campaign"] == {
        "starts_at": "2026-12-01T23:00:00Z",
        "ends_at": "2027-01-01T00:00:00Z",
    }
