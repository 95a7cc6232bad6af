"""Member import and tiers: the `tier` column gives manual tiers (reason "Import #<id>"),
unknown names are row errors of the dry run; the tiers app is reached through the cards
signals that workflows answers. The option that posts opening balances as earned points."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

import cards.import_admin  # noqa: F401  (registers the admin)
from cards import importing
from cards.models import MemberImport
from loyalty import errors as loyalty_errors
from loyalty.models import LedgerEntry, Member
from loyalty.selectors import ledger_problems
from loyalty.services import points_adjust, points_credit_bulk
from tests.tiers.factories import TierFactory
from tiers.models import MemberTier, TierChange
from tiers.selectors import member_metric
from tiers.services import tiers_evaluate

from .test_import import csv_bytes, dry_run, run_import, table_counts

pytestmark = pytest.mark.django_db


def row(external_id: str, tier: str = "", balance: str = "") -> list[str]:
    return [external_id, "", "", "", "", "", balance, tier]


def test_members_get_the_tier_of_their_row_as_a_manual_tier_with_the_import_as_reason(program, staff, member):
    gold = TierFactory(program=program, name="Gold")
    rows = [row("c-1", "gold"), row(member.external_id, "GOLD"), row("c-3")]

    member_import = run_import(program, staff, csv_bytes(rows))

    assert member_import.status == MemberImport.Status.APPLIED
    tiered = Member.objects.filter(external_id__in=["c-1", member.external_id])
    states = MemberTier.objects.filter(member__in=tiered)
    assert {(s.tier_id, s.manual_reason) for s in states} == {(gold.pk, f"Import #{member_import.pk}")}
    assert states.count() == 2
    assert all(s.manual_until is not None for s in states)
    assert not MemberTier.objects.filter(member__external_id="c-3").exists()
    changes = TierChange.objects.filter(kind=TierChange.Kind.MANUAL)
    assert {(c.to_tier_id, c.reason, c.actor_id) for c in changes} == {
        (gold.pk, f"Import #{member_import.pk}", staff.pk)
    }


def test_an_unknown_tier_is_a_row_error_of_the_dry_run_and_nothing_is_applied(program, other_program, staff):
    TierFactory(program=program, name="Gold")
    TierFactory(program=other_program, name="Platinum")
    before = table_counts()
    rows = [row("c-1", "Gold"), row("c-2", "Platinum")]

    member_import = dry_run(program, staff, csv_bytes(rows))

    assert member_import.status == MemberImport.Status.FAILED
    assert [(e["line"], e["field"], e["value"]) for e in member_import.errors] == [(3, "tier", "Platinum")]
    with pytest.raises(importing.ImportNotApplicable):
        importing.member_import_apply(member_import=member_import, actor=staff)
    assert table_counts() == before
    assert not MemberTier.objects.exists()


def test_an_inactive_tier_is_unknown(program, staff):
    TierFactory(program=program, name="Gold", is_active=False)

    member_import = dry_run(program, staff, csv_bytes([row("c-1", "Gold")]))

    assert [e["field"] for e in member_import.errors] == ["tier"]


def test_a_tier_removed_between_dry_run_and_apply_fails_the_import_with_nothing_written(program, staff):
    gold = TierFactory(program=program, name="Gold")
    member_import = dry_run(program, staff, csv_bytes([row("c-1", "Gold", "50")]))
    assert member_import.status == MemberImport.Status.DRY_RUN
    before = table_counts()
    gold.is_active = False
    gold.save()

    applied = importing.member_import_apply(member_import=member_import, actor=staff)

    assert applied.status == MemberImport.Status.FAILED
    assert [e["field"] for e in applied.errors] == ["tier"]
    assert table_counts() == before


def test_a_failure_while_setting_tiers_rolls_back_the_whole_import(program, staff, monkeypatch):
    TierFactory(program=program, name="Gold")
    member_import = dry_run(program, staff, csv_bytes([row("c-1", "Gold", "50")]))
    before = table_counts()

    def refuse(**kwargs):
        raise loyalty_errors.Conflict("no tiers")

    monkeypatch.setattr("tiers.services.tier_set_manual", refuse)
    applied = importing.member_import_apply(member_import=member_import, actor=staff)

    assert applied.status == MemberImport.Status.FAILED
    assert table_counts() == before
    assert not MemberTier.objects.exists()


def test_a_file_without_a_tier_column_leaves_tiers_alone(program, staff, member):
    gold = TierFactory(program=program, name="Gold")
    MemberTier.objects.create(member=member, tier=gold, since=member.enrolled_at)
    header = ["external_id", "first_name"]

    run_import(program, staff, csv_bytes([[member.external_id, "New"], ["c-2", "Bea"]], header=header))

    state = MemberTier.objects.get()
    assert (state.member_id, state.tier_id, state.manual_until, state.manual_reason) == (member.pk, gold.pk, None, "")
    assert not TierChange.objects.exists()


def test_reimporting_the_same_tier_writes_no_second_change(program, staff):
    TierFactory(program=program, name="Gold")
    data = csv_bytes([row("c-1", "Gold")])
    run_import(program, staff, data)

    run_import(program, staff, data)

    assert TierChange.objects.count() == 1


# --------------------------------------------------------------------------------------------
# Opening balances toward the tier metric (the import's option)


def import_with_balances(program, staff, *, counts: bool) -> MemberImport:
    data = csv_bytes([row("c-1", balance="150"), row("c-2")])
    member_import = importing.member_import_dry_run(
        program=program, file_name="m.csv", data=data, actor=staff, opening_balance_counts_for_tier=counts
    )
    assert member_import.status == MemberImport.Status.DRY_RUN, member_import.errors
    return importing.member_import_apply(member_import=member_import, actor=staff)


def test_with_the_option_opening_balances_are_earned_points_that_count_toward_tiers(program, staff):
    silver = TierFactory(program=program, name="Silver", threshold=Decimal("100"))

    member_import = import_with_balances(program, staff, counts=True)

    assert member_import.opening_balance_counts_for_tier is True
    ada = Member.objects.get(external_id="c-1")
    assert (ada.available, ada.lifetime_earned) == (150, 150)
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.points, entry.reason) == (
        LedgerEntry.Kind.EARN,
        150,
        f"Opening balance (import #{member_import.pk})",
    )
    assert member_metric(member=ada, now=timezone.now()) == Decimal("150")
    tiers_evaluate(now=timezone.now())
    assert MemberTier.objects.get(member=ada).tier == silver
    assert list(ledger_problems()) == []


def test_without_the_option_opening_balances_stay_adjustments_outside_the_tier_metric(program, staff):
    TierFactory(program=program, name="Silver", threshold=Decimal("100"))

    member_import = import_with_balances(program, staff, counts=False)

    assert member_import.opening_balance_counts_for_tier is False
    ada = Member.objects.get(external_id="c-1")
    assert (ada.available, ada.lifetime_earned) == (150, 0)
    assert LedgerEntry.objects.get().kind == LedgerEntry.Kind.ADJUST
    assert member_metric(member=ada, now=timezone.now()) == Decimal("0")
    assert list(ledger_problems()) == []


def test_an_earn_kind_bulk_credit_refuses_a_member_who_owes_points_and_writes_nothing(program, staff, member):
    points_adjust(program=program, member_id=member.pk, points=-30, reason="x", actor=staff)
    before = LedgerEntry.objects.count()

    with pytest.raises(loyalty_errors.InvalidInput):
        points_credit_bulk(program=program, credits=[(member.pk, 50)], reason="Opening", actor=staff, kind="earn")
    with pytest.raises(loyalty_errors.InvalidInput):
        points_credit_bulk(program=program, credits=[(member.pk, 50)], reason="Opening", actor=staff, kind="redeem")

    assert LedgerEntry.objects.count() == before
    assert list(ledger_problems()) == []


def test_the_upload_form_passes_the_option_to_the_dry_run(client, program, staff):
    client.force_login(staff)
    upload = SimpleUploadedFile("m.csv", csv_bytes([row("c-1", balance="5")]), content_type="text/csv")

    response = client.post(
        reverse("admin:cards_memberimport_add"),
        {"program": program.pk, "file": upload, "opening_balance_counts_for_tier": "on"},
    )

    assert response.status_code == 302
    assert MemberImport.objects.get().opening_balance_counts_for_tier is True


def test_with_the_option_members_reach_their_tier_right_after_the_import_commits(
    program, staff, django_capture_on_commit_callbacks
):
    silver = TierFactory(program=program, name="Silver", threshold=Decimal("100"))

    with django_capture_on_commit_callbacks(execute=True):
        import_with_balances(program, staff, counts=True)

    assert MemberTier.objects.get(member__external_id="c-1").tier == silver
    assert not MemberTier.objects.filter(member__external_id="c-2", tier__isnull=False).exists()
