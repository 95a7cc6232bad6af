"""Drafts and versions (docs/drafts.md): a draft never earns; publishing makes it live in one
step and records a version with its diff; an earlier version comes back as a new draft; a
stale draft is refused; two publishes at once publish once; the draft's rules for
`workflows.rules.evaluate`."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connection

from loyalty import errors
from loyalty.models import StaffAction
from notifications import emails
from notifications.models import EmailTemplate
from programfiles import selectors, services
from programfiles.loading import DocumentInvalid
from programfiles.models import ProgramDraft, ProgramVersion
from tests.loyalty.factories import MemberFactory, StaffFactory
from tests.programfiles.builders import build_program
from workflows import rules as rule_math
from workflows import services as workflow_services
from workflows.models import EarningRule

pytestmark = pytest.mark.django_db

WEDNESDAY_NOON = dt.datetime(2026, 11, 4, 11, 0, tzinfo=dt.UTC)

BONUS = {
    "code": "wednesday-bonus",
    "name": "Wednesday bonus",
    "trigger": "purchase",
    "kind": "fixed",
    "points": 100,
    "multiplier": 1,
    "priority": 50,
    "stackable": True,
    "is_active": True,
    "conditions": {"days_of_week": [2]},
}


@pytest.fixture(autouse=True)
def _public_urls(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True


@pytest.fixture
def shop():
    return build_program()


@pytest.fixture
def manager(db):
    return StaffFactory(is_superuser=True)


def purchase(program, member, order_id: str, when: dt.datetime = WEDNESDAY_NOON) -> int:
    result = workflow_services.activity_report(
        program=program, member=member, type="purchase", occurred_at=when, order_id=order_id, amount=Decimal("40")
    )
    return result.points


def rule_item(draft: ProgramDraft, code: str) -> dict:
    return next(r for r in draft.sections["earning_rules"] if r["code"] == code)


def with_bonus(shop, manager) -> ProgramDraft:
    draft = services.draft_start(program=shop, actor=manager)
    return services.draft_item_save(draft=draft, section="earning_rules", key=None, item=dict(BONUS), actor=manager)


def test_a_draft_does_not_change_earning_until_it_is_published(shop, manager):
    member = MemberFactory(program=shop)
    before = purchase(shop, member, "o-1")
    draft = with_bonus(shop, manager)

    assert purchase(shop, member, "o-2") == before  # the draft's bonus does not earn
    assert not EarningRule.objects.filter(program=shop, code="wednesday-bonus").exists()

    services.draft_publish(draft=draft, actor=manager, note="Wednesday bonus")

    assert purchase(shop, member, "o-3") == before + 100
    assert EarningRule.objects.get(program=shop, code="wednesday-bonus").points == 100


def test_members_do_not_see_a_draft_rule_until_it_is_published(shop, manager):
    from portal.selectors_card import earning_rules

    draft = services.draft_start(program=shop, actor=manager)
    secret = {**BONUS, "customer_text": "Secret draft bonus"}
    draft = services.draft_item_save(draft=draft, section="earning_rules", key=None, item=secret, actor=manager)

    assert "Secret draft bonus" not in [view.text for view in earning_rules(program=shop, now=WEDNESDAY_NOON)]

    services.draft_publish(draft=draft, actor=manager)

    assert "Secret draft bonus" in [view.text for view in earning_rules(program=shop, now=WEDNESDAY_NOON)]


def test_publish_records_a_version_with_who_when_the_note_and_the_diff(shop, manager):
    draft = with_bonus(shop, manager)
    rule = rule_item(draft, "double-weekend")
    draft = services.draft_item_save(
        draft=draft, section="earning_rules", key="double-weekend", item={**rule, "multiplier": 3}, actor=manager
    )
    moment = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)

    version = services.draft_publish(draft=draft, actor=manager, note="Weekend x3 and a Wednesday bonus", now=moment)

    assert (version.number, version.published_by, version.published_at) == (1, manager, moment)
    assert version.note == "Weekend x3 and a Wednesday bonus"
    assert {(c["key"], c["field"], c["action"]) for c in version.changes} == {
        ("double-weekend", "multiplier", "changed"),
        ("wednesday-bonus", "", "added"),
    }
    changed = next(c for c in selectors.version_changes(version) if c.field == "multiplier")
    assert str(changed) == "earning_rules.double-weekend.multiplier: 2 -> 3"
    assert version.document["earning_rules"] == selectors.sections_of(version.document)["earning_rules"]
    draft.refresh_from_db()
    assert draft.status == ProgramDraft.Status.PUBLISHED
    audit = StaffAction.objects.get(action=StaffAction.Action.DRAFT_PUBLISH)
    assert (audit.program, audit.actor, audit.reason) == (shop, manager, version.note)
    assert audit.details["version"] == 1
    assert "earning_rules.double-weekend.multiplier: 2 -> 3" in audit.details["changes"]
    assert selectors.draft_open(shop) is None


def test_an_earlier_version_is_restored_as_a_new_draft(shop, manager):
    def publish_multiplier(value: int) -> ProgramVersion:
        draft = services.draft_start(program=shop, actor=manager)
        rule = rule_item(draft, "double-weekend")
        changed = {**rule, "multiplier": value}
        draft = services.draft_item_save(
            draft=draft, section="earning_rules", key="double-weekend", item=changed, actor=manager
        )
        return services.draft_publish(draft=draft, actor=manager, note=f"x{value}")

    first = publish_multiplier(3)
    publish_multiplier(4)

    draft = services.version_restore(version=first, actor=manager)

    assert draft.restored_from == first
    assert EarningRule.objects.get(program=shop, code="double-weekend").multiplier == 4  # nothing live yet
    assert [str(c) for c in selectors.draft_changes(draft)] == ["earning_rules.double-weekend.multiplier: 4 -> 3"]
    assert StaffAction.objects.filter(action=StaffAction.Action.VERSION_RESTORE, details__version=1).exists()

    third = services.draft_publish(draft=draft, actor=manager, note="Back to x3")

    assert third.number == 3
    assert EarningRule.objects.get(program=shop, code="double-weekend").multiplier == 3


def test_restoring_needs_the_open_draft_published_or_discarded_first(shop, manager):
    version = services.draft_publish(draft=with_bonus(shop, manager), actor=manager)
    services.draft_start(program=shop, actor=manager)

    with pytest.raises(errors.Conflict, match="already has an open draft"):
        services.version_restore(version=version, actor=manager)


def test_a_stale_draft_is_refused_and_shows_what_changed_live(shop, manager):
    draft = with_bonus(shop, manager)
    live_rule = EarningRule.objects.get(program=shop, code="double-weekend")
    live_rule.multiplier = 5  # someone edits the live rule in the admin meanwhile
    live_rule.save()

    with pytest.raises(services.DraftStale) as refused:
        services.draft_publish(draft=draft, actor=manager)

    assert [str(c) for c in refused.value.changes] == ["earning_rules.double-weekend.multiplier: 2 -> 5"]
    assert "changed since this draft was taken" in refused.value.message
    assert not EarningRule.objects.filter(program=shop, code="wednesday-bonus").exists()
    assert not ProgramVersion.objects.exists()
    draft.refresh_from_db()
    assert draft.status == ProgramDraft.Status.OPEN


def test_updating_a_stale_draft_keeps_its_edits_on_top_of_the_live_changes(shop, manager):
    draft = with_bonus(shop, manager)
    live_rule = EarningRule.objects.get(program=shop, code="double-weekend")
    live_rule.multiplier = 5
    live_rule.save()

    draft = services.draft_rebase(draft=draft, actor=manager)

    assert selectors.draft_live_changes(draft) == []
    assert [str(c) for c in selectors.draft_changes(draft)] == ["earning_rules.wednesday-bonus: added"]
    services.draft_publish(draft=draft, actor=manager)
    assert EarningRule.objects.get(program=shop, code="double-weekend").multiplier == 5  # the live edit kept
    assert EarningRule.objects.filter(program=shop, code="wednesday-bonus").exists()


def test_updating_a_draft_refuses_an_item_changed_both_in_the_draft_and_live(shop, manager):
    draft = services.draft_start(program=shop, actor=manager)
    rule = rule_item(draft, "double-weekend")
    draft = services.draft_item_save(
        draft=draft, section="earning_rules", key="double-weekend", item={**rule, "multiplier": 3}, actor=manager
    )
    live_rule = EarningRule.objects.get(program=shop, code="double-weekend")
    live_rule.priority = 99
    live_rule.save()

    with pytest.raises(services.DraftConflict) as refused:
        services.draft_rebase(draft=draft, actor=manager)

    assert refused.value.items == ["earning_rules.double-weekend"]
    draft.refresh_from_db()
    assert rule_item(draft, "double-weekend")["multiplier"] == 3
    assert selectors.draft_live_changes(draft) != []


def test_changes_outside_the_drafts_sections_do_not_make_it_stale_and_are_kept(shop, manager):
    draft = with_bonus(shop, manager)
    emails.email_template_save(
        program=shop, kind="welcome", language="en", subject="Hi again", html_body="<p>Hi</p>", text_body=""
    )

    services.draft_publish(draft=draft, actor=manager)

    assert EmailTemplate.objects.get(program=shop, kind="welcome").subject == "Hi again"


def test_a_draft_refuses_what_would_not_publish_and_keeps_what_it_had(shop, manager):
    draft = services.draft_start(program=shop, actor=manager)
    rule = rule_item(draft, "double-weekend")

    with pytest.raises(DocumentInvalid) as refused:
        services.draft_item_save(
            draft=draft,
            section="earning_rules",
            key="double-weekend",
            item={**rule, "conditions": {**rule["conditions"], "tiers": ["Platinum"]}},
            actor=manager,
        )

    assert any("no tier named 'Platinum'" in str(p) for p in refused.value.problems)
    draft.refresh_from_db()
    assert rule_item(draft, "double-weekend")["conditions"]["tiers"] == ["Gold", "Silver"]


def test_one_open_draft_per_program(shop, manager):
    services.draft_start(program=shop, actor=manager)

    with pytest.raises(errors.Conflict):
        services.draft_start(program=shop, actor=manager)


def test_a_published_or_discarded_draft_cannot_be_edited_or_published_again(shop, manager):
    draft = with_bonus(shop, manager)
    services.draft_discard(draft=draft, actor=manager)

    with pytest.raises(services.DraftClosed):
        services.draft_publish(draft=draft, actor=manager)
    with pytest.raises(services.DraftClosed):
        services.draft_item_remove(draft=draft, section="earning_rules", key="wednesday-bonus", actor=manager)
    assert StaffAction.objects.filter(action=StaffAction.Action.DRAFT_DISCARD).count() == 1


def test_a_rule_removed_from_the_draft_stays_live_until_published(shop, manager):
    draft = services.draft_start(program=shop, actor=manager)
    draft = services.draft_item_remove(draft=draft, section="earning_rules", key="double-weekend", actor=manager)

    assert EarningRule.objects.filter(program=shop, code="double-weekend").exists()
    assert [str(c) for c in selectors.draft_changes(draft)] == ["earning_rules.double-weekend: removed"]

    services.draft_publish(draft=draft, actor=manager)

    assert not EarningRule.objects.filter(program=shop, code="double-weekend").exists()


def test_draft_rules_are_earning_rules_that_evaluate_reads(shop, manager):
    draft = with_bonus(shop, manager)
    rule = rule_item(draft, "double-weekend")
    services.draft_item_save(
        draft=draft, section="earning_rules", key="double-weekend", item={**rule, "multiplier": 3}, actor=manager
    )

    found = selectors.draft_rules(shop)

    assert all(isinstance(r, EarningRule) for r in found)
    by_code = {r.code: r for r in found}
    assert by_code["wednesday-bonus"].id is None
    assert by_code["double-weekend"].id == EarningRule.objects.get(program=shop, code="double-weekend").id
    assert by_code["double-weekend"].multiplier == 3
    assert by_code["double-weekend"].tier_ids == {t.id for t in shop.tiers.all()}
    facts = rule_math.ActivityFacts(type="purchase", occurred_at=WEDNESDAY_NOON, weekday=2, amount=Decimal("40"))
    awards = rule_math.evaluate(found, facts, usage={}, earn_rate=shop.earn_rate)
    assert {a.rule.code: a.points for a in awards} == {"wednesday-bonus": 100}
    assert not EarningRule.objects.filter(code="wednesday-bonus").exists()  # nothing saved


def test_draft_rules_refuse_a_program_without_a_draft(shop):
    with pytest.raises(errors.NotFound):
        selectors.draft_rules(shop)


@pytest.mark.django_db(transaction=True)
def test_two_publishes_of_one_draft_at_once_publish_it_once(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    shop = build_program()
    manager = StaffFactory(is_superuser=True)
    draft = with_bonus(shop, manager)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def publish() -> None:
        try:
            barrier.wait()
            outcomes.append(services.draft_publish(draft=ProgramDraft.objects.get(pk=draft.pk), actor=manager))
        except Exception as exc:  # the outcome is what the test checks
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=publish) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    versions = [o for o in outcomes if isinstance(o, ProgramVersion)]
    refused = [o for o in outcomes if isinstance(o, services.DraftClosed)]
    assert (len(versions), len(refused)) == (1, 1), outcomes
    assert ProgramVersion.objects.filter(program=shop).count() == 1
    assert EarningRule.objects.filter(program=shop, code="wednesday-bonus").count() == 1
    assert StaffAction.objects.filter(action=StaffAction.Action.DRAFT_PUBLISH).count() == 1
