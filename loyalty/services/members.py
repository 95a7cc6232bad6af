"""Members: enrolment, status (active / blocked) and profile changes. Balances are never
written here (they belong to the posting); `member_enrolled` and `member_status_changed` are
sent after commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from loyalty import errors
from loyalty.lock_objects import member_for_update
from loyalty.models import Member, Program, new_referral_code
from loyalty.signals import member_enrolled, member_status_changed

from .checks import full_clean


def member_enroll(
    *,
    program: Program,
    external_id: str | None = None,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    birthday: dt.date | None = None,
    channel: str = Member.Channel.ONLINE,
    email_consent: bool = False,
    referred_by: Member | None = None,
    now: dt.datetime | None = None,
) -> tuple[Member, bool]:
    """Enrol a customer. Enrolling an `external_id` already enrolled returns that member and
    False (safe under concurrent calls: the unique index decides). Sends `member_enrolled`."""
    now = now or timezone.now()
    if external_id is not None:
        external_id = str(external_id).strip() or None
    if referred_by is not None and referred_by.program_id != program.id:
        raise errors.InvalidInput("The referrer belongs to another program.", field="referral_code")
    if external_id is not None:
        existing = Member.objects.filter(program=program, external_id=external_id).first()
        if existing is not None:
            return existing, False
    member = Member(
        program=program,
        external_id=external_id,
        email=(email or "").strip().lower(),
        first_name=first_name,
        last_name=last_name,
        birthday=birthday,
        enrollment_channel=channel,
        email_consent=email_consent,
        referred_by=referred_by,
        enrolled_at=now,
    )
    full_clean(member, exclude=["referral_code", "user"])
    for _attempt in range(5):
        member.referral_code = new_referral_code()
        try:
            with transaction.atomic():
                member.save(force_insert=True)
        except IntegrityError:
            if external_id is not None:
                existing = Member.objects.filter(program=program, external_id=external_id).first()
                if existing is not None:
                    return existing, False
            member.pk = None
            continue  # referral code collision: draw again
        transaction.on_commit(
            lambda: member_enrolled.send(sender=Member, program=program, member=member, channel=channel)
        )
        return member, True
    raise errors.Conflict("Could not allocate a unique referral code; try again.")


def member_set_status(*, member: Member, status: str, actor: Any = None) -> Member:
    """Block or unblock a member. Blocked members neither earn nor spend; staff adjustments,
    refunds and expiry still apply."""
    if status not in Member.Status.values:
        raise errors.InvalidInput(f"Unknown status {status!r}.", field="status")
    with transaction.atomic():
        locked = member_for_update(member_id=member.pk).get()
        old = locked.status
        if old != status:
            Member.objects.filter(pk=member.pk).update(status=status)
            transaction.on_commit(
                lambda: member_status_changed.send(
                    sender=Member, program=locked.program, member=locked, old_status=old, new_status=status, actor=actor
                )
            )
    member.status = status
    return member


MEMBER_PROFILE_FIELDS = ("external_id", "email", "first_name", "last_name", "birthday", "email_consent")


def member_update(*, member: Member, **changes: Any) -> Member:
    """Change profile fields of a member (not balances, not status: see `member_set_status`).
    Writes only the changed columns, so balances posted meanwhile are never overwritten."""
    unknown = set(changes) - set(MEMBER_PROFILE_FIELDS)
    if unknown:
        raise errors.InvalidInput(f"Not a profile field: {', '.join(sorted(unknown))}.", fields=sorted(unknown))
    if "email" in changes:
        changes["email"] = (changes["email"] or "").strip().lower()
    if "external_id" in changes:
        changes["external_id"] = str(changes["external_id"] or "").strip() or None
    for name, value in changes.items():
        setattr(member, name, value)
    full_clean(member, exclude=["referral_code", "user", "program", "referred_by"])
    if changes:
        try:
            with transaction.atomic():
                member.save(update_fields=list(changes))
        except IntegrityError as exc:
            raise errors.Conflict(
                "Another member of this program has this external id.", fields={"external_id": ["already used"]}
            ) from exc
    return member
