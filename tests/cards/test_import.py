"""Member import from CSV (dry run, row errors, all-or-nothing, idempotent re-import, opening
balances, cards) and member export (round trip, formula escaping, streaming), service and admin."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import cards.import_admin  # noqa: F401  (registers the admin until cards/admin.py imports it)
from cards import importing, numbers
from cards.models import Card, CardEvent, MemberImport
from loyalty import errors as loyalty_errors
from loyalty.models import LedgerEntry, Member
from loyalty.selectors import ledger_problems
from loyalty.signals import member_enrolled
from tests.loyalty.factories import MemberFactory, ProgramFactory, StaffFactory
from tests.tiers.factories import TierFactory

from .factories import CardFactory

pytestmark = pytest.mark.django_db

HEADER = ["external_id", "email", "first_name", "last_name", "birthday", "card_number", "opening_balance", "tier"]


def csv_bytes(rows, header=HEADER, delimiter=",", bom=False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def card_number(program) -> str:
    return numbers.random_number(program.card_prefix, program.card_number_length)


def bad_check_digit(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def dry_run(program, staff, data: bytes) -> MemberImport:
    return importing.member_import_dry_run(program=program, file_name="members.csv", data=data, actor=staff)


def run_import(program, staff, data: bytes) -> MemberImport:
    member_import = dry_run(program, staff, data)
    assert member_import.status == MemberImport.Status.DRY_RUN, member_import.errors
    return importing.member_import_apply(member_import=member_import, actor=staff)


def table_counts() -> tuple[int, int, int]:
    return Member.objects.count(), Card.objects.count(), LedgerEntry.objects.count()


def error_keys(member_import: MemberImport) -> list[tuple[int, str]]:
    return [(e["line"], e["field"]) for e in member_import.errors]


@pytest.fixture
def three_rows():
    return [
        ["c-1", "ada@example.com", "Ada", "Lovelace", "1985-12-10", "", "100", ""],
        ["c-2", "alan@example.com", "Alan", "Turing", "1912-06-23", "", "0", ""],
        ["c-3", "grace@example.com", "Grace", "Hopper", "", "", "", ""],
    ]


# --------------------------------------------------------------------------------------------
# Dry run


def test_dry_run_writes_nothing_but_reports_what_would_happen(program, staff, member, three_rows):
    member.external_id, member.email = "c-2", "alan@example.com"
    member.first_name, member.last_name = "Alan", "Turing"
    member.birthday = None
    member.save()
    before = table_counts()

    member_import = dry_run(program, staff, csv_bytes(three_rows))

    assert table_counts() == before
    assert member_import.status == MemberImport.Status.DRY_RUN
    assert (member_import.rows, member_import.new_count, member_import.updated_count) == (3, 2, 1)
    assert member_import.unchanged_count == 0
    assert (member_import.opening_balance_total, member_import.opening_balance_members) == (100, 1)
    assert member_import.summary["changes"] == [
        {"line": 3, "external_id": "c-2", "fields": {"birthday": ["", "1912-06-23"]}}
    ]
    assert member_import.summary["digital_cards"] == 2
    assert member_import.file.read() == csv_bytes(three_rows)
    assert member_import.created_by == staff


def test_semicolons_and_a_byte_order_mark_are_read(program, staff, three_rows):
    member_import = dry_run(program, staff, csv_bytes(three_rows, delimiter=";", bom=True))

    assert member_import.error_count == 0, member_import.errors
    assert member_import.summary["delimiter"] == ";"
    assert member_import.new_count == 3


def test_each_bad_row_gets_its_own_error_with_line_and_field(program, other_program, staff, member, other_member):
    taken = CardFactory(member=other_member).number
    foreign = CardFactory(program=other_program).number
    blocked = CardFactory(member=member, blocked=True).number
    twice = card_number(program)
    rows = [
        ["ok-1", "ok@example.com", "Ok", "", "2000-01-31", "", "5", ""],  # line 2
        ["bad-email", "not-an-email", "", "", "", "", "", ""],  # 3
        ["bad-date", "", "", "", "31/01/2000", "", "", ""],  # 4
        ["ok-1", "", "", "", "", "", "", ""],  # 5: duplicate external id
        ["bad-luhn", "", "", "", "", bad_check_digit(card_number(program)), "", ""],  # 6
        ["taken", "", "", "", "", taken, "", ""],  # 7
        ["twice-a", "", "", "", "", twice, "", ""],  # 8
        ["twice-b", "", "", "", "", twice, "", ""],  # 9
        ["negative", "", "", "", "", "", "-5", ""],  # 10
        ["fraction", "", "", "", "", "", "2.5", ""],  # 11
        ["", "noid@example.com", "", "", "", "", "", ""],  # 12
        ["foreign", "", "", "", "", foreign, "", ""],  # 13
        ["blocked", "", "", "", "", blocked, "", ""],  # 14
        ["feb-30", "", "", "", "2001-02-30", "", "", ""],  # 15
        ["short", ""],  # 16
    ]
    before = table_counts()

    member_import = dry_run(program, staff, csv_bytes(rows))

    assert table_counts() == before
    assert member_import.status == MemberImport.Status.FAILED
    assert not member_import.can_apply
    assert error_keys(member_import) == [
        (3, "email"),
        (4, "birthday"),
        (5, "external_id"),
        (6, "card_number"),
        (7, "card_number"),
        (9, "card_number"),
        (10, "opening_balance"),
        (11, "opening_balance"),
        (12, "external_id"),
        (13, "card_number"),
        (14, "card_number"),
        (15, "birthday"),
        (16, ""),
    ]
    messages = {e["line"]: e["message"] for e in member_import.errors}
    assert "also on line 2" in messages[5]
    assert "check digit" in messages[6]
    assert "another member" in messages[7]
    assert "also on line 8" in messages[9]
    assert "negative" in messages[10]
    assert "another program" in messages[13]
    assert "blocked" in messages[14]
    assert member_import.error_count == 13


def test_unknown_columns_and_a_missing_external_id_column_are_errors(program, staff):
    unknown = dry_run(program, staff, csv_bytes([["c-1", "x"]], header=["external_id", "colour"]))
    missing = dry_run(program, staff, csv_bytes([["a@example.com"]], header=["email"]))

    assert error_keys(unknown) == [(1, "colour")]
    assert error_keys(missing) == [(1, "external_id")]
    assert unknown.status == missing.status == MemberImport.Status.FAILED


def test_line_numbers_count_physical_lines_of_quoted_multiline_cells(program, staff):
    data = b'external_id,first_name\nc-1,"two\nlines"\nc-2,ok\n\nc-3,\x00\n'

    member_import = dry_run(program, staff, data)

    assert error_keys(member_import) == [(6, "first_name")]


def test_a_file_that_is_not_utf8_is_refused_with_its_line(program, staff):
    member_import = dry_run(program, staff, "external_id,first_name\nc-1,Zoë\n".encode("latin-1"))

    assert error_keys(member_import) == [(2, "")]
    assert "UTF-8" in member_import.errors[0]["message"]


def test_tier_names_are_counted_in_the_summary(program, staff):
    TierFactory(program=program, name="Gold")
    rows = [["c-1", "", "", "", "", "", "", "Gold"], ["c-2", "", "", "", "", "", "", "Gold"]]

    member_import = dry_run(program, staff, csv_bytes(rows))

    assert member_import.error_count == 0
    assert member_import.summary["tiers"] == {"Gold": 2}
    assert member_import.warnings == []


# --------------------------------------------------------------------------------------------
# Apply: all or nothing, idempotent, ledger


def test_apply_creates_members_with_their_profile_and_opening_balance(program, staff, three_rows):
    member_import = run_import(program, staff, csv_bytes(three_rows))

    assert member_import.status == MemberImport.Status.APPLIED
    assert member_import.applied_by == staff
    ada = Member.objects.get(program=program, external_id="c-1")
    assert (ada.email, ada.first_name, ada.last_name, str(ada.birthday)) == (
        "ada@example.com",
        "Ada",
        "Lovelace",
        "1985-12-10",
    )
    assert ada.enrollment_channel == Member.Channel.IMPORT
    assert (ada.available, ada.lifetime_earned) == (100, 0)
    assert Member.objects.get(program=program, external_id="c-3").available == 0
    codes = list(Member.objects.filter(program=program).values_list("referral_code", flat=True))
    assert len(set(codes)) == 3
    assert all(len(c) == 8 for c in codes)


def test_opening_balances_are_ledger_entries_with_the_reason_and_the_staff_user(program, staff, three_rows):
    member_import = run_import(program, staff, csv_bytes(three_rows))

    entry = LedgerEntry.objects.get()
    assert entry.member.external_id == "c-1"
    assert (entry.kind, entry.points, entry.remaining) == (LedgerEntry.Kind.ADJUST, 100, 100)
    assert entry.reason == f"Opening balance (import #{member_import.pk})"
    assert entry.created_by == staff
    assert list(ledger_problems()) == []


def test_a_file_that_became_invalid_before_apply_imports_nothing(program, staff, other_member, three_rows):
    card = CardFactory(program=program)
    rows = [*three_rows, ["c-4", "", "", "", "", card.number, "50", ""]]
    member_import = dry_run(program, staff, csv_bytes(rows))
    assert member_import.can_apply
    Card.objects.filter(pk=card.pk).update(member=other_member, status=Card.Status.ACTIVE)  # assigned meanwhile
    before = table_counts()

    member_import = importing.member_import_apply(member_import=member_import, actor=staff)

    assert table_counts() == before
    assert member_import.status == MemberImport.Status.FAILED
    assert error_keys(member_import) == [(5, "card_number")]
    assert not Member.objects.filter(external_id__in=["c-1", "c-2", "c-3", "c-4"]).exists()


def test_a_failure_while_writing_rolls_back_members_and_cards(program, staff, three_rows, monkeypatch):
    stock = CardFactory(program=program)
    member_import = dry_run(program, staff, csv_bytes([*three_rows, ["c-4", "", "", "", "", stock.number, "9", ""]]))

    def refuse(**kwargs):
        raise loyalty_errors.InvalidInput("The ledger refused the credits.")

    monkeypatch.setattr(importing.writing, "points_credit_bulk", refuse)
    before = table_counts()

    member_import = importing.member_import_apply(member_import=member_import, actor=staff)

    assert member_import.status == MemberImport.Status.FAILED
    assert "The ledger refused the credits." in member_import.errors[0]["message"]
    assert table_counts() == before
    stock.refresh_from_db()
    assert (stock.status, stock.member) == (Card.Status.UNASSIGNED, None)
    assert not CardEvent.objects.exists()


def test_a_dry_run_with_errors_cannot_be_applied(program, staff, three_rows):
    member_import = dry_run(program, staff, csv_bytes([*three_rows, ["c-9", "broken", "", "", "", "", "", ""]]))

    with pytest.raises(importing.ImportNotApplicable):
        importing.member_import_apply(member_import=member_import, actor=staff)
    assert not Member.objects.exists()


def test_an_import_is_applied_once(program, staff, three_rows):
    member_import = run_import(program, staff, csv_bytes(three_rows))

    with pytest.raises(importing.ImportNotApplicable):
        importing.member_import_apply(member_import=member_import, actor=staff)
    assert LedgerEntry.objects.count() == 1


def test_reimporting_the_same_file_changes_nothing(program, staff, three_rows):
    card = CardFactory(program=program)
    rows = [*three_rows, ["c-4", "", "", "", "", card.number, "50", ""]]
    run_import(program, staff, csv_bytes(rows))
    members = list(Member.objects.order_by("id").values())
    cards = list(Card.objects.order_by("id").values())
    entries = LedgerEntry.objects.count()

    again = run_import(program, staff, csv_bytes(rows))

    assert again.status == MemberImport.Status.APPLIED
    assert (again.new_count, again.updated_count, again.unchanged_count) == (0, 0, 4)
    assert again.opening_balance_total == 0
    assert any("applied as import" in w for w in again.warnings)
    assert any("opening balance" in w for w in again.warnings)
    assert list(Member.objects.order_by("id").values()) == members
    assert list(Card.objects.order_by("id").values()) == cards
    assert LedgerEntry.objects.count() == entries == 2
    assert CardEvent.objects.count() == 4  # 1 assigned + 3 digital cards issued, by the first import only
    assert list(ledger_problems()) == []


def test_an_existing_member_is_updated_only_in_the_columns_of_the_file(program, staff, member):
    member.birthday = None
    member.save()
    data = csv_bytes([[member.external_id, "NEW@Example.com", "7"]], header=["external_id", "email", "opening_balance"])

    member_import = run_import(program, staff, data)

    member.refresh_from_db()
    assert (member_import.new_count, member_import.updated_count) == (0, 1)
    assert member.email == "new@example.com"
    assert member.first_name == "Ada"  # no first_name column: untouched
    assert member.available == 0  # existing members get no opening balance
    assert not LedgerEntry.objects.exists()


def test_a_blank_cell_clears_the_field(program, staff, member):
    data = csv_bytes([[member.external_id, ""]], header=["external_id", "last_name"])

    run_import(program, staff, data)

    member.refresh_from_db()
    assert member.last_name == ""


def test_imported_members_do_not_send_member_enrolled_but_one_members_imported(
    program, staff, three_rows, django_capture_on_commit_callbacks
):
    enrolled, imported = [], []

    def on_enrolled(**kwargs):
        enrolled.append(kwargs)

    def on_imported(**kwargs):
        imported.append(kwargs)

    member_enrolled.connect(on_enrolled)
    importing.members_imported.connect(on_imported)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            member_import = run_import(program, staff, csv_bytes(three_rows))
    finally:
        member_enrolled.disconnect(on_enrolled)
        importing.members_imported.disconnect(on_imported)

    assert enrolled == []
    assert len(imported) == 1
    assert imported[0]["member_import"].pk == member_import.pk
    assert sorted(imported[0]["member_ids"]) == sorted(Member.objects.values_list("id", flat=True))


def test_a_changed_stored_file_is_refused(program, staff, three_rows):
    member_import = dry_run(program, staff, csv_bytes(three_rows))
    with open(member_import.file.path, "ab") as handle:
        handle.write(b"c-9,,,,,,1000000,\n")

    member_import = importing.member_import_apply(member_import=member_import, actor=staff)

    assert member_import.status == MemberImport.Status.FAILED
    assert "differs" in member_import.errors[0]["message"]
    assert not Member.objects.exists()


# --------------------------------------------------------------------------------------------
# Cards


def test_an_unassigned_card_of_the_program_is_assigned(program, staff):
    card = CardFactory(program=program)

    run_import(program, staff, csv_bytes([["c-1", "", "", "", "", card.number, "", ""]]))

    card.refresh_from_db()
    member = Member.objects.get(external_id="c-1")
    assert (card.member, card.status) == (member, Card.Status.ACTIVE)
    assert card.assigned_at is not None
    assert list(member.cards.all()) == [card]  # no digital card besides


def test_a_card_number_unknown_to_the_system_is_registered_as_a_physical_card(program, staff):
    number = "4111 1111 1111 1111"  # another system's numbering, check digit valid

    run_import(program, staff, csv_bytes([["c-1", "", "", "", "", number, "", ""]]))

    card = Card.objects.get(number="4111111111111111")
    assert (card.member.external_id, card.program, card.kind, card.status) == (
        "c-1",
        program,
        Card.Kind.PHYSICAL,
        Card.Status.ACTIVE,
    )


def test_new_members_without_a_card_number_get_a_digital_card(program, staff, three_rows):
    run_import(program, staff, csv_bytes(three_rows))

    cards = Card.objects.filter(program=program)
    assert cards.count() == 3
    assert {c.kind for c in cards} == {Card.Kind.DIGITAL}
    assert {c.member.external_id for c in cards} == {"c-1", "c-2", "c-3"}
    assert all(c.number.startswith(program.card_prefix) and numbers.is_well_formed(c.number) for c in cards)
    assert all(len(c.number) == program.card_number_length for c in cards)


def test_an_existing_member_gets_a_card_from_the_file_and_keeps_their_own(program, staff, member):
    own = CardFactory(member=member, digital=True)
    stock = CardFactory(program=program)

    member_import = run_import(
        program, staff, csv_bytes([[member.external_id, stock.number]], ["external_id", "card_number"])
    )

    assert member_import.updated_count == 1
    assert set(member.cards.values_list("id", flat=True)) == {own.pk, stock.pk}


def test_every_card_the_import_changes_gets_its_event_from_the_same_statement(program, staff, member):
    stock = CardFactory(program=program)
    rows = [
        ["c-1", "", "", "", "", stock.number, "", ""],  # stock: assigned
        ["c-2", "", "", "", "", "4111 1111 1111 1111", "", ""],  # unknown number: registered
        ["c-3", "", "", "", "", "", "", ""],  # no number: a digital card
        [member.external_id, "", "", "", "", "", "", ""],  # known member, no card: unchanged
    ]

    with CaptureQueriesContext(connection) as queries:
        member_import = run_import(program, staff, csv_bytes(rows))

    members = dict(Member.objects.values_list("external_id", "id"))
    events = {(e.card.number, e.kind, e.member_id, e.actor, e.note) for e in CardEvent.objects.select_related("card")}
    digital = Card.objects.get(member_id=members["c-3"])
    note = f"import #{member_import.pk}"
    assert events == {
        (stock.number, "imported", members["c-1"], staff, note),
        ("4111111111111111", "imported", members["c-2"], staff, f"{note}: card registered"),
        (digital.number, "issued", members["c-3"], staff, note),
    }
    assert len([q for q in queries if "cards_cardevent" in q["sql"]]) == 3  # one statement per kind of change


# --------------------------------------------------------------------------------------------
# Export


def exported(program, **kwargs) -> list[list[str]]:
    text = "".join(importing.member_export_csv(program=program, **kwargs))
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_export_has_the_import_columns_and_the_available_balance(program, staff, three_rows):
    run_import(program, staff, csv_bytes(three_rows))
    ada = Member.objects.get(external_id="c-1")
    physical = CardFactory(member=ada)

    rows = exported(program)

    assert rows[0] == HEADER
    assert rows[1] == ["c-1", "ada@example.com", "Ada", "Lovelace", "1985-12-10", physical.number, "100", ""]
    assert [r[0] for r in rows[1:]] == ["c-1", "c-2", "c-3"]


def test_export_then_import_changes_nothing(program, staff, three_rows):
    run_import(program, staff, csv_bytes(three_rows))
    MemberFactory(program=program, first_name="=cmd|' /C calc'!A0", last_name="-minus", email="plus+tag@example.com")
    before = (list(Member.objects.order_by("id").values()), LedgerEntry.objects.count(), Card.objects.count())
    data = "".join(importing.member_export_csv(program=program)).encode()

    member_import = run_import(program, staff, data)

    assert (member_import.new_count, member_import.updated_count, member_import.unchanged_count) == (0, 0, 4)
    after = (list(Member.objects.order_by("id").values()), LedgerEntry.objects.count(), Card.objects.count())
    assert after == before


def test_export_escapes_cells_a_spreadsheet_would_run_as_formulas(program):
    MemberFactory(program=program, external_id="@x", first_name="=1+1", last_name="+SUM(A1)", email="-a@example.com")

    row = exported(program)[1]

    assert row[:4] == ["'@x", "'-a@example.com", "'=1+1", "'+SUM(A1)"]
    assert importing.escape_formula("Ada") == "Ada"
    assert importing.unescape_formula("'=1+1") == "=1+1"


def test_export_skips_anonymous_members_unless_asked(program):
    MemberFactory(program=program, external_id="c-1")
    MemberFactory(program=program, external_id=None)
    MemberFactory(program=ProgramFactory(), external_id="other-program")

    assert [r[0] for r in exported(program)[1:]] == ["c-1"]
    assert [r[0] for r in exported(program, include_anonymous=True)[1:]] == ["c-1", ""]


def test_export_reads_members_in_keyset_pages(program):
    MemberFactory.create_batch(5, program=program)

    with CaptureQueriesContext(connection) as queries:
        rows = list(importing.member_export_rows(program=program, chunk_size=2))

    assert len(rows) == 5
    assert len(queries) == 3  # 2 + 2 + 1 rows: one LIMITed query per page, no count, no cursor
    assert all("LIMIT" in q["sql"] for q in queries)


# --------------------------------------------------------------------------------------------
# Admin: upload -> preview -> apply, export, permissions


def manager():
    user = StaffFactory()
    user.groups.add(Group.objects.get(name="Manager"))
    return user


def support():
    user = StaffFactory()
    user.groups.add(Group.objects.get(name="Support"))
    return user


def test_admin_upload_preview_and_apply(client, program, three_rows):
    user = manager()
    client.force_login(user)
    add_url = reverse("admin:cards_memberimport_add")
    assert client.get(add_url).status_code == 200

    upload = SimpleUploadedFile("members.csv", csv_bytes(three_rows), content_type="text/csv")
    response = client.post(add_url, {"program": program.pk, "file": upload})

    member_import = MemberImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:cards_memberimport_change", args=[member_import.pk])
    assert not Member.objects.exists()
    preview = client.get(response["Location"])
    assert preview.status_code == 200
    assert 'name="apply"' in preview.content.decode()
    assert preview.context["member_import"].new_count == 3

    response = client.post(reverse("admin:cards_memberimport_apply", args=[member_import.pk]))

    assert response.status_code == 302
    member_import.refresh_from_db()
    assert member_import.status == MemberImport.Status.APPLIED
    assert member_import.applied_by == user
    assert Member.objects.filter(program=program).count() == 3
    assert LedgerEntry.objects.get().created_by == user
    page = client.get(response["Location"]).content.decode()
    assert "Imported members.csv: 3 new" in page
    assert 'name="apply"' not in page
    assert client.get(reverse("admin:cards_memberimport_changelist")).status_code == 200
    assert client.get(reverse("admin:cards_memberimport_file", args=[member_import.pk])).getvalue() == csv_bytes(
        three_rows
    )


def test_admin_preview_lists_row_errors_and_offers_no_import(client, program):
    client.force_login(manager())
    upload = SimpleUploadedFile("bad.csv", csv_bytes([["c-1", "nope", "", "", "1999-13-01", "", "-1", ""]]))

    response = client.post(
        reverse("admin:cards_memberimport_add"), {"program": program.pk, "file": upload}, follow=True
    )

    page = response.content.decode()
    assert 'id="import-errors"' in page
    assert "Not a valid email address." in page
    assert "The opening balance must not be negative." in page
    assert 'name="apply"' not in page
    member_import = MemberImport.objects.get()
    client.post(reverse("admin:cards_memberimport_apply", args=[member_import.pk]))
    assert not Member.objects.exists()


def test_admin_export_streams_the_csv(client, program):
    MemberFactory(program=program, external_id="c-1", first_name="=bad")
    client.force_login(manager())
    assert client.get(reverse("admin:cards_memberimport_export")).status_code == 200

    response = client.get(reverse("admin:cards_memberimport_export_csv", args=[program.pk]))

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    body = b"".join(response.streaming_content).decode()
    assert "c-1," in body
    assert ",'=bad," in body


def test_import_and_export_pages_need_the_add_member_permission(client, program, three_rows):
    client.force_login(support())  # views and changes members, may not add them
    member_import = dry_run(program, StaffFactory(), csv_bytes(three_rows))
    urls = [
        reverse("admin:cards_memberimport_changelist"),
        reverse("admin:cards_memberimport_add"),
        reverse("admin:cards_memberimport_change", args=[member_import.pk]),
        reverse("admin:cards_memberimport_export"),
        reverse("admin:cards_memberimport_export_csv", args=[program.pk]),
        reverse("admin:cards_memberimport_file", args=[member_import.pk]),
    ]

    assert [client.get(url).status_code for url in urls] == [403] * len(urls)
    assert client.post(reverse("admin:cards_memberimport_apply", args=[member_import.pk])).status_code == 403
    assert not Member.objects.exists()


def test_a_user_with_only_add_member_may_import(client, program, three_rows):
    user = StaffFactory()
    user.user_permissions.add(Permission.objects.get(codename="add_member", content_type__app_label="loyalty"))
    client.force_login(user)
    upload = SimpleUploadedFile("members.csv", csv_bytes(three_rows))

    client.post(reverse("admin:cards_memberimport_add"), {"program": program.pk, "file": upload})
    client.post(reverse("admin:cards_memberimport_apply", args=[MemberImport.objects.get().pk]))

    assert Member.objects.count() == 3
