"""The dry run and the all-or-nothing apply of a member import (the `MemberImport` row, the
kept file, the advisory lock) and `members_imported`, sent after an apply commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from typing import Any

from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from loyalty import errors as loyalty_errors
from loyalty.models import Program

from ..models import MemberImport
from .parsing import (
    ERRORS_KEPT,
    RowError,
    member_csv_parse,
)
from .planning import (
    ImportPlan,
    member_import_plan,
)
from .writing import (
    _write,
)

# kwargs: program, member_import, member_ids (the members the import created). After commit.
members_imported = Signal()
# The same kwargs, sent inside the apply's transaction right after its writes, for receivers
# whose rows must commit or roll back with the import (the welcome emails, when the program
# asks for them): one set-based statement, never one per member.
members_imported_in_transaction = Signal()


# --------------------------------------------------------------------------------------------
# Dry run and apply


def _checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _counts(plan: ImportPlan) -> dict[str, Any]:
    return {
        "rows": plan.parsed.row_count,
        "new_count": len(plan.new),
        "updated_count": plan.updated,
        "unchanged_count": plan.unchanged,
        "error_count": len(plan.errors),
        "opening_balance_total": plan.opening_total,
        "opening_balance_members": len(plan.opening_rows),
        "errors": [e.as_dict() for e in plan.errors[:ERRORS_KEPT]],
        "warnings": plan.warnings,
        "summary": plan.summary(),
    }


def member_import_dry_run(
    *,
    program: Program,
    file_name: str,
    data: bytes,
    actor: Any,
    now: dt.datetime | None = None,
    opening_balance_counts_for_tier: bool = False,
) -> MemberImport:
    """Check a CSV file against `program` and record what importing it would do, without
    writing members, cards or ledger entries. The upload is kept (default storage) on the
    returned `MemberImport`, status `dry_run` when it can be applied, `failed` when it has
    row errors (`errors`, `error_count`). With `opening_balance_counts_for_tier` the apply
    posts opening balances as earn entries (they count toward the tier metric), else as
    adjustments. Queries: 3 + 1 insert."""
    now = now or timezone.now()
    plan = member_import_plan(program=program, parsed=member_csv_parse(data))
    checksum = _checksum(data)
    plan.warnings[:0] = _applied_before(program, checksum)
    counts = _counts(plan)
    member_import = MemberImport(
        program=program,
        file_name=(file_name or "members.csv")[:255],
        checksum=checksum,
        size=len(data),
        status=MemberImport.Status.FAILED if plan.errors else MemberImport.Status.DRY_RUN,
        created_by=actor if getattr(actor, "pk", None) else None,
        created_at=now,
        opening_balance_counts_for_tier=opening_balance_counts_for_tier,
        **counts,
    )
    member_import.file.save(_storage_name(file_name), ContentFile(data), save=False)
    member_import.save(force_insert=True)
    return member_import


def _applied_before(program: Program, checksum: str) -> list[str]:
    before = (
        MemberImport.objects.filter(program=program, checksum=checksum, status=MemberImport.Status.APPLIED)
        .order_by("-id")
        .first()
    )
    if before is None:
        return []
    return [
        f"The same file was applied as import #{before.pk} on {before.applied_at:%Y-%m-%d %H:%M}; "
        "importing it again changes only what changed since."
    ]


def _storage_name(file_name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", (file_name or "members.csv").rsplit("/", 1)[-1])[:80].strip(".-")
    return stem or "members.csv"


class ImportNotApplicable(loyalty_errors.Conflict):
    """Only a clean dry run can be applied, once."""

    code = "import_not_applicable"


class _Refused(Exception):
    def __init__(self, errors: list[RowError], warnings: Sequence[str] = (), counts: dict[str, Any] | None = None):
        super().__init__("refused")
        self.errors = errors
        self.warnings = list(warnings)
        self.counts = counts or {}


def member_import_apply(*, member_import: MemberImport, actor: Any, now: dt.datetime | None = None) -> MemberImport:
    """Apply a dry-run import: exactly its kept file (checksum compared), checked again now,
    all of it or nothing in one transaction. Returns the import, `applied` or `failed` (with
    `errors`); raises `ImportNotApplicable` (a `Conflict`) if it was applied or refused before.

    Imports into one program run one at a time (transaction-level advisory lock); the file's
    existing cards are locked before the members (the cards app's lock order). Queries: about
    15, whatever the number of rows (set-based), plus 1 per indebted member credited."""
    if actor is None or not getattr(actor, "pk", None):
        raise loyalty_errors.InvalidInput("Applying an import needs the acting staff user.", field="actor")
    now = now or timezone.now()
    try:
        with transaction.atomic(durable=True):
            locked = MemberImport.objects.select_for_update().select_related("program").get(pk=member_import.pk)
            if locked.status != MemberImport.Status.DRY_RUN:
                raise ImportNotApplicable(
                    f"Import #{locked.pk} is {locked.get_status_display().lower()}; upload the file again.",
                    status=locked.status,
                )
            program = locked.program
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('cards.member_import:' || %s, 0))", [program.id]
                )
            data = _read_kept(locked)
            plan = member_import_plan(program=program, parsed=member_csv_parse(data), lock_cards=True)
            plan.warnings[:0] = _applied_before(program, locked.checksum)
            if plan.errors:
                raise _Refused(plan.errors, plan.warnings, _counts(plan))
            created_ids = _write(program=program, plan=plan, member_import=locked, actor=actor, now=now)
            counts = _counts(plan)
            MemberImport.objects.filter(pk=locked.pk).update(
                status=MemberImport.Status.APPLIED, applied_at=now, applied_by=actor, **counts
            )
            if created_ids and members_imported_in_transaction.has_listeners(MemberImport):
                members_imported_in_transaction.send(
                    sender=MemberImport, program=program, member_import=locked, member_ids=created_ids
                )
            transaction.on_commit(
                lambda: members_imported.send(
                    sender=MemberImport, program=program, member_import=locked, member_ids=created_ids
                )
            )
    except ImportNotApplicable:
        raise
    except _Refused as refused:
        _mark_failed(member_import, refused, actor=actor, now=now)
    except (loyalty_errors.LoyaltyError, IntegrityError) as exc:
        message = exc.message if isinstance(exc, loyalty_errors.LoyaltyError) else "The database refused the import."
        _mark_failed(member_import, _Refused([RowError(0, "", f"{message} Nothing was imported.")]), actor, now)
    member_import.refresh_from_db()
    return member_import


def _mark_failed(member_import: MemberImport, refused: _Refused, actor: Any, now: dt.datetime) -> None:
    fields: dict[str, Any] = dict(refused.counts)
    fields.update(
        status=MemberImport.Status.FAILED,
        errors=[e.as_dict() for e in refused.errors[:ERRORS_KEPT]],
        error_count=len(refused.errors),
        applied_by=actor,
        applied_at=now,
    )
    if refused.warnings:
        fields["warnings"] = refused.warnings
    MemberImport.objects.filter(pk=member_import.pk, status=MemberImport.Status.DRY_RUN).update(**fields)


def _read_kept(member_import: MemberImport) -> bytes:
    try:
        with member_import.file.open("rb") as handle:
            data = handle.read()
    except (OSError, ValueError) as exc:
        raise _Refused([RowError(0, "", "The uploaded file is no longer in storage; upload it again.")]) from exc
    if _checksum(data) != member_import.checksum:
        raise _Refused([RowError(0, "", "The stored file differs from the one checked in the dry run.")])
    return data
