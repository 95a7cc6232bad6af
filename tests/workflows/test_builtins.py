"""Built-in activities: the ready-made rules every program gets, and the signup bonus."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from loyalty import services as ledger
from loyalty.models import Activity, LedgerEntry, Member, Program
from tests.loyalty.factories import MemberFactory, ProgramFactory
from workflows import builtins, services
from workflows.models import EarningRule

from .conftest import WEDNESDAY_NOON

pytestmark = pytest.mark.django_db


def switch_on(program: Program, builtin: str) -> EarningRule:
    rule = EarningRule.objects.get(program=program, builtin=builtin)
    rule.is_active = True
    rule.save(update_fields=["is_active"])
    return rule


@pytest.fixture
def installed(program):
    builtins.builtin_rules_install(program=program)
    return program


# --------------------------------------------------------------------------------------------
# Installing the presets


def test_install_creates_one_inactive_rule_per_builtin_with_its_preset(program):
    installed = builtins.builtin_rules_install(program=program)
    assert all(created for _, created in installed)
    rules = {r.builtin: r for r, _ in installed}
    assert set(rules) == {"signup", "purchase", "birthday", "social_share", "store_visit"}
    assert not any(r.is_active for r in rules.values())
    assert all(r.trigger == r.builtin for r in rules.values())
    signup = rules["signup"]
    assert (signup.kind, signup.points, signup.cap_lifetime) == ("fixed", Decimal(100), 100)
    purchase = rules["purchase"]
    assert (purchase.kind, purchase.points, purchase.name) == ("per_amount", None, "Points per EUR spent")
    birthday = rules["birthday"]
    assert (birthday.kind, birthday.points, birthday.cap_per_day) == ("fixed", Decimal(200), None)
    share = rules["social_share"]
    assert (share.kind, share.points, share.cap_per_day) == ("fixed", Decimal(10), 10)
    visit = rules["store_visit"]
    assert (visit.kind, visit.points, visit.cap_per_day) == ("fixed", Decimal(20), 20)


def test_install_twice_creates_nothing_and_keeps_staff_edits(program):
    builtins.builtin_rules_install(program=program)
    EarningRule.objects.filter(program=program, builtin="birthday").update(points=Decimal(500), is_active=True)
    again = builtins.builtin_rules_install(program=program)
    assert not any(created for _, created in again)
    assert EarningRule.objects.filter(program=program).count() == 5
    birthday = EarningRule.objects.get(program=program, builtin="birthday")
    assert (birthday.points, birthday.is_active) == (Decimal(500), True)


def test_install_leaves_the_merchants_own_rules_alone(program):
    EarningRule.objects.create(program=program, name="Own signup", trigger="signup", kind="fixed", points=5)
    builtins.builtin_rules_install(program=program)
    assert EarningRule.objects.filter(program=program, trigger="signup").count() == 2
    assert EarningRule.objects.filter(program=program, builtin="").count() == 1


def test_a_new_program_gets_the_builtin_rules_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        program = ledger.program_create(name="Fresh", slug="fresh")
    builtins_ = set(EarningRule.objects.filter(program=program).values_list("builtin", flat=True))
    assert builtins_ == {"signup", "purchase", "birthday", "social_share", "store_visit"}
    assert not EarningRule.objects.filter(program=program, is_active=True).exists()


def test_saving_an_existing_program_installs_nothing(program, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        program.name = "Renamed"
        program.save()
    assert not EarningRule.objects.filter(program=program).exists()


def test_install_command_installs_in_the_named_program_only(program):
    other = ProgramFactory()
    out = StringIO()
    call_command("install_builtin_rules", program.slug, stdout=out)
    assert out.getvalue().strip() == f"{program.slug}: 5 built-in rules installed (0 already there)"
    assert EarningRule.objects.filter(program=program).count() == 5
    assert not EarningRule.objects.filter(program=other).exists()
    out = StringIO()
    call_command("install_builtin_rules", stdout=out)
    assert f"{program.slug}: 0 built-in rules installed (5 already there)" in out.getvalue()
    assert f"{other.slug}: 5 built-in rules installed" in out.getvalue()


def test_install_command_refuses_an_unknown_program(program):
    with pytest.raises(CommandError, match="nope"):
        call_command("install_builtin_rules", "nope")


# --------------------------------------------------------------------------------------------
# The presets once switched on


def test_purchase_preset_pays_the_program_earn_rate(installed, member):
    installed.earn_rate = Decimal("2")
    installed.save()
    switch_on(installed, "purchase")
    result = services.activity_report(
        program=installed,
        member=member,
        type="purchase",
        occurred_at=WEDNESDAY_NOON,
        order_id="o-1",
        amount=Decimal("12.50"),
    )
    assert result.points == 25
    assert result.entries[0].reason == "Points per EUR spent"


@pytest.mark.parametrize(("builtin", "points"), [("social_share", 10), ("store_visit", 20)])
def test_share_and_visit_presets_pay_once_a_day(installed, member, builtin, points):
    switch_on(installed, builtin)

    def report(hours: int) -> int:
        return services.activity_report(
            program=installed,
            member=member,
            type=builtin,
            occurred_at=WEDNESDAY_NOON + dt.timedelta(hours=hours),
            now=WEDNESDAY_NOON + dt.timedelta(hours=hours),  # reported live (daily caps count both days)
        ).points

    assert [report(0), report(2), report(24)] == [points, 0, points]


def test_an_inactive_preset_pays_nothing(installed, member):
    result = services.activity_report(program=installed, member=member, type="store_visit", occurred_at=WEDNESDAY_NOON)
    assert result.points == 0


# --------------------------------------------------------------------------------------------
# Signup bonus


def enrol(program, django_capture_on_commit_callbacks, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        return ledger.member_enrol(program=program, now=WEDNESDAY_NOON, **kwargs)


def test_enrolling_pays_the_signup_bonus_dated_by_the_enrolment(installed, django_capture_on_commit_callbacks):
    switch_on(installed, "signup")
    member, created = enrol(installed, django_capture_on_commit_callbacks, external_id="c-1", email="a@example.com")
    assert created
    (entry,) = LedgerEntry.objects.filter(member=member)
    assert (entry.points, entry.reason, entry.occurred_at) == (100, "Welcome bonus", WEDNESDAY_NOON)
    activity = Activity.objects.get(member=member)
    assert (activity.type, activity.occurred_at) == ("signup", WEDNESDAY_NOON)


def test_signup_bonus_is_paid_once_on_a_retry_or_a_second_enrolment(installed, django_capture_on_commit_callbacks):
    switch_on(installed, "signup")
    member, _ = enrol(installed, django_capture_on_commit_callbacks, external_id="c-1")
    again, created = enrol(installed, django_capture_on_commit_callbacks, external_id="c-1")
    assert (again.pk, created) == (member.pk, False)
    retry = builtins.signup_bonus_award(member=member)
    assert retry is not None
    assert retry.replayed
    assert Activity.objects.filter(member=member, type="signup").count() == 1
    member.refresh_from_db()
    assert member.available == 100


def test_imported_members_get_no_signup_bonus(installed, django_capture_on_commit_callbacks):
    switch_on(installed, "signup")
    member, _ = enrol(installed, django_capture_on_commit_callbacks, external_id="c-1", channel="import")
    assert builtins.signup_bonus_award(member=member) is None
    assert not Activity.objects.filter(member=member).exists()
    assert not LedgerEntry.objects.filter(member=member).exists()


def test_an_anonymous_card_member_gets_the_bonus_only_once_claimed(installed, django_capture_on_commit_callbacks):
    switch_on(installed, "signup")
    member, _ = enrol(installed, django_capture_on_commit_callbacks, channel=Member.Channel.CARD)
    assert not LedgerEntry.objects.filter(member=member).exists()
    ledger.member_update(member=member, email="claimed@example.com")
    assert builtins.signup_bonus_award(member=member).points == 100


def test_no_signup_activity_without_an_active_signup_rule(installed, django_capture_on_commit_callbacks):
    member, _ = enrol(installed, django_capture_on_commit_callbacks, external_id="c-1")
    assert builtins.signup_bonus_award(member=member) is None
    assert not Activity.objects.filter(member=member).exists()


def test_a_blocked_member_gets_no_signup_bonus(installed):
    switch_on(installed, "signup")
    member = MemberFactory(program=installed, status=Member.Status.BLOCKED)
    assert builtins.signup_bonus_award(member=member) is None
    assert not LedgerEntry.objects.filter(member=member).exists()


def test_the_merchants_own_signup_rule_also_pays_through_the_bonus(program, django_capture_on_commit_callbacks):
    EarningRule.objects.create(program=program, name="Hello", trigger="signup", kind="fixed", points=7)
    member, _ = enrol(program, django_capture_on_commit_callbacks, external_id="c-9")
    assert list(LedgerEntry.objects.filter(member=member).values_list("points", "reason")) == [(7, "Hello")]


def test_claiming_an_anonymous_card_pays_the_signup_bonus_once(installed, django_capture_on_commit_callbacks):
    from cards import numbers
    from cards import services as cards_services
    from tests.cards.factories import CardFactory

    switch_on(installed, "signup")
    anonymous = MemberFactory(
        program=installed, external_id=None, email="", first_name="", last_name="", enrollment_channel="card"
    )
    card = CardFactory(member=anonymous)
    with django_capture_on_commit_callbacks(execute=True):
        cards_services.card_claim(
            program=installed, number=card.number, pin=numbers.pin_for(card.number), email="claire@example.com"
        )
    anonymous.refresh_from_db()
    assert anonymous.available == 100
    assert Activity.objects.filter(member=anonymous, type="signup").count() == 1


def test_load_demo_shows_the_built_ins_and_referrals_in_each_state(db):
    import io

    from django.core.management import call_command

    from workflows.models import Referral

    out = io.StringIO()
    call_command("load_demo", members=40, stdout=out)
    assert "referral offer on, friends rewarded, pending, rejected" in out.getvalue()
    assert set(Referral.objects.values_list("status", flat=True)) == {"rewarded", "pending", "rejected"}
    # One per demo brand (Demo Coffee Roasters, Demo Espresso Bar).
    assert EarningRule.objects.filter(builtin="birthday", is_active=True, program__slug="demo").count() == 1
    assert EarningRule.objects.filter(builtin="birthday", is_active=True).count() == 2
