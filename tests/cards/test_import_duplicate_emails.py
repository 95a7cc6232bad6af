"""The member import and duplicate emails: one member per email in a program, so a file that
gives one email to two rows, or a member's email to another customer, is refused row by row in
the dry run and imports nothing."""

import pytest

from cards.models import MemberImport
from loyalty.models import Member
from tests.loyalty.factories import MemberFactory

from .test_import import csv_bytes, dry_run, error_keys, run_import, table_counts

pytestmark = pytest.mark.django_db


def test_an_email_twice_in_the_file_is_an_error_on_the_second_row_whatever_its_case(program, staff):
    data = csv_bytes(
        [
            ["c-1", "ada@example.com", "Ada", "", "", "", "", ""],
            ["c-2", "alan@example.com", "Alan", "", "", "", "", ""],
            ["c-3", "ADA@Example.com", "Other", "", "", "", "", ""],
        ]
    )
    member_import = dry_run(program, staff, data)
    assert member_import.status == MemberImport.Status.FAILED
    assert error_keys(member_import) == [(4, "email")]
    assert member_import.errors[0]["message"] == "Duplicate email: also on line 2."


def test_an_email_of_another_member_of_the_program_is_an_error(program, staff):
    owner = MemberFactory(program=program, email="taken@example.com")
    data = csv_bytes([["c-1", "Taken@Example.com", "", "", "", "", "", ""]])
    member_import = dry_run(program, staff, data)
    assert error_keys(member_import) == [(2, "email")]
    assert f"member #{owner.pk}" in member_import.errors[0]["message"]


def test_a_members_own_email_in_the_file_is_no_duplicate(program, staff):
    MemberFactory(program=program, external_id="c-1", email="ada@example.com")
    member_import = run_import(program, staff, csv_bytes([["c-1", "ADA@example.com", "Ada", "", "", "", "", ""]]))
    assert member_import.status == MemberImport.Status.APPLIED


def test_an_email_used_in_another_program_is_allowed(program, other_program, staff):
    MemberFactory(program=other_program, email="ada@example.com")
    member_import = run_import(program, staff, csv_bytes([["c-1", "ada@example.com", "", "", "", "", "", ""]]))
    assert member_import.status == MemberImport.Status.APPLIED


def test_an_email_taken_between_dry_run_and_apply_imports_nothing(program, staff):
    from cards import importing

    member_import = dry_run(program, staff, csv_bytes([["c-1", "late@example.com", "", "", "", "", "", ""]]))
    assert member_import.status == MemberImport.Status.DRY_RUN
    MemberFactory(program=program, email="late@example.com")
    before = table_counts()
    member_import = importing.member_import_apply(member_import=member_import, actor=staff)
    assert member_import.status == MemberImport.Status.FAILED
    assert error_keys(member_import) == [(2, "email")]
    assert table_counts() == before
    assert not Member.objects.filter(external_id="c-1").exists()
