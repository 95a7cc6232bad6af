"""Member import from CSV (dry run, row errors, all-or-nothing apply) and member export to CSV.

The file
    UTF-8 (a BOM is dropped), comma- or semicolon-separated (whichever the header line holds
    more of), a header line naming the columns in any order: `external_id` (required),
    `email`, `first_name`, `last_name`, `birthday` (YYYY-MM-DD), `card_number`,
    `opening_balance` (whole number >= 0), `tier`. A column the file leaves out is left
    untouched on existing members; a blank cell in a column it has clears the field. A leading
    apostrophe before = + - @ (the formula escape this module's export writes) is dropped, so
    an export imports back unchanged. Line numbers are the file's physical lines (header = 1).

Emails: one member per email in a program, case-insensitively. An email on an earlier row of
the file, or of another member of the program (not the row's own), is a row error of the dry
run, so the file is refused at apply (checked again then, under the import's lock).

What a row does (matched by `external_id` within the program)
    - unknown external id: a new member (channel "import"), its opening balance credited;
    - known external id: the profile columns the file has are compared; the member is
      "updated" when one differs or a card is to be assigned, else "unchanged" (nothing is
      written). The opening balance of an existing member is ignored (warning).

Opening balances are posted only for members the import creates, never twice: the credit
(`loyalty.services.points_credit_bulk`, reason "Opening balance (import #<id>)", actor = the
staff user) runs in the transaction that inserts the member rows, for exactly the rows that
INSERT returned; a member row is created once (unique program + external id), so re-importing
the file, or another file with the same external ids, finds the member and posts nothing.

Card numbers: must be digits with a valid Luhn check digit (8 to 32 digits; no prefix check,
so numbers printed by the old system are accepted). A number that is unassigned stock of the
program is assigned to the row's member; a number unknown to the database is registered as a
new physical card of the program, active, assigned to the member (cards migrated from the old
system); a number already assigned to the same member is unchanged. Refused: a card of another
program, a card assigned to another member, a blocked or void card, the same number twice in
the file. An existing member who gets a card keeps the cards they had. Every card the import
assigns, registers or issues gets its `CardEvent` (`imported`, or `issued` for a digital card;
actor = the staff user; note "import #<id>") from the statement that changes the card.

Digital cards and signals: `member_enrolled` is *not* sent for imported members (it would run
the cards receiver, and every later welcome reaction, 100,000 times, one member at a time, and
a migrated customer is not a new sign-up). Instead a new member without a card number gets a
digital card from one set-based INSERT (random numbers, ON CONFLICT top-up), and
`members_imported` is sent once after commit with the ids of the created members, for apps
that want to react in bulk (`members_imported_in_transaction` inside the apply's transaction,
for rows that must commit with it: the welcome emails when the program sends them to imports).

Tiers: a row's `tier` must name a tier of the program (case-insensitively; an unknown name is
a row error of the dry run). On apply each such member gets the tier as a manual tier, reason
"Import #<id>", inside the import's transaction. cards cannot import tiers (same layer), so
both steps go through signals of `cards.signals` that the workflows app answers
(`import_tier_names_check`, `import_tiers_assign`; docs/decisions.md). The names and counts
are in `MemberImport.summary["tiers"]`.

All or nothing: `member_import_apply` re-reads the kept upload (checksum compared), re-validates
it under a per-program advisory lock with the cards in the file locked, and writes everything
in one transaction; any bad row, or a conflict found while writing, writes nothing and marks
the import failed with its errors.

Speed: rows are checked in Python (about 10 us a row); look-ups and writes are set-based: the
members of the file are read with one query, new members COPY'd into a temporary table and
inserted with one INSERT ... SELECT, changed ones updated with one UPDATE ... FROM, cards
assigned/registered/issued with one statement each, balances credited with one statement.
bench/bench_import.py measures 100,000 rows (docs/performance.md).

The export streams one program's members (keyset pages of `EXPORT_CHUNK` by id, one short
query each: no long transaction, no server-side cursor, memory bounded) with the import's
columns; `opening_balance` is the member's available balance (a debt shows as 0) and
`card_number` the member's newest active card, physical first. Text cells starting with
= + - @ tab or CR are prefixed with an apostrophe (CSV formula injection).

Modules: `parsing` (the file and its rows, no database), `planning` (rows matched to the
database), `writing` (the set-based writes), `applying` (dry run and apply), `exporting`.
"""

from .applying import (
    ImportNotApplicable,
    member_import_apply,
    member_import_dry_run,
    members_imported,
    members_imported_in_transaction,
)
from .exporting import member_export_csv, member_export_rows
from .parsing import (
    CHANGES_KEPT,
    COLUMNS,
    ERRORS_KEPT,
    EXPORT_CHUNK,
    FORMULA_STARTS,
    MAX_LENGTHS,
    PROFILE_COLUMNS,
    MemberRow,
    ParsedFile,
    RowError,
    escape_formula,
    max_rows,
    member_csv_parse,
    unescape_formula,
)
from .planning import ImportPlan, member_import_plan
from .writing import referral_codes

__all__ = [
    "CHANGES_KEPT",
    "COLUMNS",
    "ERRORS_KEPT",
    "EXPORT_CHUNK",
    "FORMULA_STARTS",
    "MAX_LENGTHS",
    "PROFILE_COLUMNS",
    "ImportNotApplicable",
    "ImportPlan",
    "MemberRow",
    "ParsedFile",
    "RowError",
    "escape_formula",
    "max_rows",
    "member_csv_parse",
    "member_export_csv",
    "member_export_rows",
    "member_import_apply",
    "member_import_dry_run",
    "member_import_plan",
    "members_imported",
    "members_imported_in_transaction",
    "referral_codes",
    "unescape_formula",
]
