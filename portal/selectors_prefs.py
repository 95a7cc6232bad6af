"""Reads of the portal's "Preferences" and "My data" pages: the member's whole record as plain
rows per section, for the JSON and the CSV downloads (docs/portal.md, "My data").

Only the logged-in member's rows are read (every query filters on the member). About other
people, only what is the member's own business is exported: the friends they referred appear
as the date each joined, nothing else."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from cards.models import Card
from loyalty.models import Activity, DeletionRequest, LedgerEntry, Member
from notifications.models import EmailMessage, EmailOptOut
from rewards.models import Redemption

CHUNK = 2000

# Each section's columns, in order (the CSV's header even when the section is empty).
COLUMNS: dict[str, tuple[str, ...]] = {
    "profile": (
        "member_id",
        "program",
        "external_id",
        "email",
        "first_name",
        "last_name",
        "birthday",
        "language",
        "email_consent",
        "status",
        "enrolled_at",
        "enrollment_channel",
        "referral_code",
        "referred_by_a_member",
        "points_available",
        "points_pending",
        "points_earned_in_total",
        "points_spent",
        "points_expired",
    ),
    "cards": ("number", "kind", "status", "assigned_at", "claimed_at", "blocked_at"),
    "ledger": (
        "id",
        "kind",
        "points",
        "remaining",
        "occurred_at",
        "created_at",
        "available_at",
        "expires_at",
        "reason",
        "reference",
    ),
    "activities": ("id", "type", "occurred_at", "order_id", "amount", "currency", "channel", "items", "data"),
    "coupons": (
        "code",
        "reward",
        "status",
        "points",
        "kind",
        "value",
        "issued_at",
        "expires_at",
        "used_at",
        "cancelled_at",
    ),
    "referrals": ("friend_joined_at",),
    "emails": ("kind", "subject", "status", "to_email", "created_at", "sent_at", "status_at"),
    "email_opt_outs": ("kind", "created_at", "via"),
    "deletion_requests": ("status", "requested_at", "decided_at"),
}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:f}"
    return value


def _rows(queryset: QuerySet[Any], fields: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    for values in queryset.values_list(*fields).iterator(chunk_size=CHUNK):
        yield dict(zip(fields, values, strict=True))


def _profile(member: Member) -> dict[str, Any]:
    return {
        "member_id": member.pk,
        "program": member.program.name,
        "external_id": member.external_id or "",
        "email": member.email,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "birthday": member.birthday,
        "language": member.language,
        "email_consent": member.email_consent,
        "status": member.status,
        "enrolled_at": member.enrolled_at,
        "enrollment_channel": member.enrollment_channel,
        "referral_code": member.referral_code,
        "referred_by_a_member": member.referred_by_id is not None,
        "points_available": member.available,
        "points_pending": member.pending,
        "points_earned_in_total": member.lifetime_earned,
        "points_spent": member.redeemed,
        "points_expired": member.expired,
    }


def _ledger(member: Member) -> Iterator[dict[str, Any]]:
    """The member's entries, oldest first. A staff adjustment's reason is an internal note
    (the "My points" page does not show it either): exported as "Points changed by our team"."""
    fields = COLUMNS["ledger"]
    entries = LedgerEntry.objects.filter(member=member).order_by("id")
    for row in _rows(entries, fields):
        if row["kind"] == LedgerEntry.Kind.ADJUST:
            row["reason"] = "Points changed by our team"
        yield row


def member_data(*, member: Member) -> dict[str, list[dict[str, Any]]]:
    """Everything the program holds about `member`, section by section, as plain values
    (ISO dates, decimals as strings). Queries: one per section."""
    sections: dict[str, Iterator[dict[str, Any]] | list[dict[str, Any]]] = {
        "profile": [_profile(member)],
        "cards": _rows(Card.objects.filter(member=member).order_by("id"), COLUMNS["cards"]),
        "ledger": _ledger(member),
        "activities": _rows(
            Activity.objects.filter(program_id=member.program_id, member=member).order_by("id"),
            COLUMNS["activities"],
        ),
        "coupons": _rows(
            Redemption.objects.filter(member=member).order_by("id"),
            (
                "code",
                "reward__name",
                "status",
                "points",
                "kind",
                "value",
                "issued_at",
                "expires_at",
                "used_at",
                "cancelled_at",
            ),
        ),
        "referrals": _rows(Member.objects.filter(referred_by=member).order_by("id"), ("enrolled_at",)),
        "emails": _rows(EmailMessage.objects.filter(member=member).order_by("id"), COLUMNS["emails"]),
        "email_opt_outs": _rows(EmailOptOut.objects.filter(member=member).order_by("id"), COLUMNS["email_opt_outs"]),
        "deletion_requests": _rows(
            DeletionRequest.objects.filter(member=member).order_by("id"), COLUMNS["deletion_requests"]
        ),
    }
    result: dict[str, list[dict[str, Any]]] = {}
    for name, rows in sections.items():
        columns = COLUMNS[name]
        # The coupon's reward and the friend's join date come under the exported column names.
        result[name] = [
            {column: _plain(value) for column, value in zip(columns, row.values(), strict=True)} for row in rows
        ]
    return result


def member_data_json(*, member: Member) -> bytes:
    return json.dumps(member_data(member=member), ensure_ascii=False, indent=2).encode()


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet must not read a cell as a formula
    return value


def member_data_zip(*, member: Member) -> bytes:
    """One CSV per section (UTF-8 with a byte-order mark, so that spreadsheets read accents),
    in a zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, rows in member_data(member=member).items():
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(COLUMNS[name])
            for row in rows:
                writer.writerow([_cell(row[column]) for column in COLUMNS[name]])
            archive.writestr(f"{name}.csv", "\ufeff" + text.getvalue())
    return buffer.getvalue()
