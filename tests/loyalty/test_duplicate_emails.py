"""One member per email in a program, case-insensitively: the services, the admin form and the
database's unique index (program, lower(email)) refuse a second one."""

import importlib

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loyalty import errors, services
from loyalty.models import LedgerEntry, Member

from .factories import MemberFactory, ProgramFactory, StaffFactory
from .test_concurrency import run_together

pytestmark = pytest.mark.django_db


def test_enrolling_a_second_member_with_an_email_is_refused_whatever_its_case(program, member):
    with pytest.raises(errors.DuplicateEmail) as caught:
        services.member_enrol(program=program, external_id="new-1", email=f"  {member.email.upper()} ")
    assert caught.value.code == "duplicate_email"
    assert caught.value.details["fields"] == {"email": ["A member of this program already has this email."]}
    assert Member.objects.filter(program=program).count() == 1


def test_an_email_may_be_used_once_in_each_program(member):
    other, created = services.member_enrol(program=ProgramFactory(), email=member.email)
    assert created
    assert other.email == member.email


def test_members_without_an_email_are_not_duplicates(program):
    services.member_enrol(program=program, external_id="a")
    services.member_enrol(program=program, external_id="b")
    assert Member.objects.filter(program=program, email="").count() == 2


def test_enrolling_a_known_external_id_returns_the_member_even_with_its_email(program, member):
    found, created = services.member_enrol(program=program, external_id=member.external_id, email=member.email)
    assert (found, created) == (member, False)


def test_changing_the_email_to_another_members_is_refused(program, member, other_member):
    with pytest.raises(errors.DuplicateEmail):
        services.member_update(member=other_member, email=member.email.title())
    other_member.refresh_from_db()
    assert other_member.email != member.email


def test_keeping_ones_own_email_in_another_case_is_allowed(member):
    services.member_update(member=member, email=member.email.upper())
    member.refresh_from_db()
    assert member.email == member.email.lower()


def test_the_database_refuses_a_duplicate_email_in_another_case(program, member):
    with pytest.raises(IntegrityError), transaction.atomic():
        MemberFactory(program=program, email=member.email.upper())


def test_the_email_check_matches_the_unique_indexs_expression_and_condition(program, member):
    # lower(email) and `email <> ''` (the partial index's condition) make the index usable;
    # which plan wins depends on the statistics, so the query's shape is what is checked.
    with CaptureQueriesContext(connection) as queries:
        assert services.member_email_taken(program_id=program.pk, email=member.email.upper())
    (query,) = queries.captured_queries
    sql = query["sql"].upper()
    assert 'LOWER("LOYALTY_MEMBER"."EMAIL")' in sql
    assert 'NOT ("LOYALTY_MEMBER"."EMAIL" = \'\'' in sql


# -- the admin ----------------------------------------------------------------------------------


@pytest.fixture
def admin_client_(client, db):
    client.force_login(StaffFactory(is_superuser=True))
    return client


def test_the_admin_add_form_shows_the_duplicate_email_on_the_field(admin_client_, program, member):
    response = admin_client_.post(
        reverse("admin:loyalty_member_add"),
        {"program": program.pk, "external_id": "shop-99", "email": member.email.upper(), "referred_by": ""},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["email"] == ["A member of this program already has this email."]
    assert not Member.objects.filter(external_id="shop-99").exists()


def test_the_admin_change_form_refuses_another_members_email(admin_client_, program, member, other_member):
    response = admin_client_.post(
        reverse("admin:loyalty_member_change", args=[other_member.pk]),
        {"external_id": other_member.external_id, "email": member.email, "referred_by": ""},
    )
    assert response.status_code == 200
    assert "email" in response.context["adminform"].form.errors


def test_the_program_page_has_the_enrol_on_first_purchase_setting(admin_client_, program):
    response = admin_client_.get(reverse("admin:loyalty_program_change", args=[program.pk]))
    assert b'name="enrol_on_first_purchase"' in response.content


# -- the migration's check ------------------------------------------------------------------------


def test_the_migration_refuses_existing_duplicates_and_names_them(program, member):
    migration = importlib.import_module("loyalty.migrations.0011_member_unique_email")
    # Simulate data from before the index: drop it inside this test's transaction.
    with connection.cursor() as cur:
        cur.execute("DROP INDEX member_unique_email")
    twin = MemberFactory(program=program, email=member.email.upper())
    with pytest.raises(RuntimeError) as caught, connection.schema_editor() as editor:
        migration.refuse_duplicate_emails(None, editor)
    message = str(caught.value)
    assert f"program {program.slug}: {member.email} -> members {member.pk}, {twin.pk}" in message


def test_the_migration_check_passes_without_duplicates(member):
    migration = importlib.import_module("loyalty.migrations.0011_member_unique_email")
    with connection.schema_editor() as editor:
        migration.refuse_duplicate_emails(None, editor)


# -- concurrency ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_concurrent_enrolments_with_one_email_enrol_one_member():
    program = ProgramFactory()

    def enrol(i: int):
        member, _created = services.member_enrol(program=program, external_id=f"c-{i}", email="same@example.com")
        return member.pk

    results = run_together(8, enrol)
    assert sorted(kind for kind, _ in results) == ["error"] * 7 + ["ok"]
    assert all(isinstance(v, errors.DuplicateEmail) for kind, v in results if kind == "error"), results
    assert Member.objects.filter(program=program).count() == 1
    assert not LedgerEntry.objects.exists()


def test_a_customer_enrolled_meanwhile_with_their_email_is_returned_not_refused(program, monkeypatch):
    """The race of two first purchases of one new customer: the other enrolment commits between
    the external-id look-up and the email check. The customer's member comes back; no 409."""
    from loyalty.services import members as member_services

    twin = MemberFactory(program=program, external_id="shop-1", email="same@example.com")
    real = member_services._by_external_id
    calls = []

    def missed_once(program_, external_id):
        calls.append(external_id)
        return None if len(calls) == 1 else real(program_, external_id)  # the first look-up ran before the commit

    monkeypatch.setattr(member_services, "_by_external_id", missed_once)

    member, created = services.member_enrol(program=program, external_id="shop-1", email="Same@example.com")

    assert (member.pk, created) == (twin.pk, False)
    assert len(calls) == 2
