"""Members: enrolment, status (active / blocked) and profile changes. Balances are never
written here (they belong to the posting); `member_enrolled` and `member_status_changed` are
sent after commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from loyalty import errors
from loyalty.lock_objects import member_for_update
from loyalty.models import MEMBER_UNIQUE_EMAIL, DeletionRequest, Member, Program, new_referral_code
from loyalty.signals import (
    deletion_request_decided_in_transaction,
    member_anonymised_in_transaction,
    member_enrolled,
    member_enrolled_in_transaction,
    member_status_changed,
)

from .checks import full_clean

DUPLICATE_EMAIL_MESSAGE = "A member of this program already has this email."


def member_email_taken(*, program_id: int, email: str, exclude_member_id: int | None = None) -> bool:
    """Whether another member of the program has `email`, whatever its case (an empty email is
    never taken). 1 query, on the unique index member_unique_email."""
    email = (email or "").strip().lower()
    if not email:
        return False
    # `email <> ''` repeats the partial index's condition so that the planner may use it.
    members = (
        Member.objects.alias(email_lower=Lower("email"))
        .filter(program_id=program_id, email_lower=email)
        .exclude(email="")
    )
    if exclude_member_id is not None:
        members = members.exclude(pk=exclude_member_id)
    return members.exists()


def _duplicate_email(email: str) -> errors.DuplicateEmail:
    return errors.DuplicateEmail(DUPLICATE_EMAIL_MESSAGE, email=email, fields={"email": [DUPLICATE_EMAIL_MESSAGE]})


def _violated_constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint a unique violation hit (psycopg's diagnostics), if known."""
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)


def member_enrol(
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
    language: str = "",
    now: dt.datetime | None = None,
) -> tuple[Member, bool]:
    """Enrol a customer. Enrolling an `external_id` already enrolled returns that member and
    False (safe under concurrent calls: the unique index decides). An email another member of
    the program has (case-insensitively) is refused with `DuplicateEmail` (409), also when two
    enrolments race (the unique index member_unique_email decides). `language` ("" = the
    program's) is the member's language (emails, portal). Sends `member_enrolled` after commit."""
    now = now or timezone.now()
    if external_id is not None:
        external_id = str(external_id).strip() or None
    if referred_by is not None and referred_by.program_id != program.id:
        raise errors.InvalidInput("The referrer belongs to another program.", field="referral_code")
    existing = _by_external_id(program, external_id)
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
        language=language,
        enrolled_at=now,
    )
    # The constraints are checked here and by the indexes below, not by full_clean (which
    # would query each again and report a duplicate as a 400).
    full_clean(member, exclude=["referral_code", "user"], validate_constraints=False)
    if member_email_taken(program_id=program.pk, email=member.email):
        # A concurrent enrolment of this very customer may have committed since the look-up
        # above: that is the member to return, not a duplicate.
        existing = _by_external_id(program, external_id)
        if existing is not None:
            return existing, False
        raise _duplicate_email(member.email)
    for _attempt in range(5):
        member.referral_code = new_referral_code()
        try:
            with transaction.atomic():
                member.save(force_insert=True)
        except IntegrityError as exc:
            # A concurrent enrolment committed first: the same external id returns that member
            # (checked first: both indexes may be hit), the same email is refused.
            existing = _by_external_id(program, external_id)
            if existing is not None:
                return existing, False
            if _violated_constraint(exc) == MEMBER_UNIQUE_EMAIL:
                raise _duplicate_email(member.email) from exc
            member.pk = None
            continue  # referral code collision: draw again
        member_enrolled_in_transaction.send(sender=Member, program=program, member=member, channel=channel)
        transaction.on_commit(
            lambda: member_enrolled.send(sender=Member, program=program, member=member, channel=channel)
        )
        return member, True
    raise errors.Conflict("Could not allocate a unique referral code; try again.")


def _by_external_id(program: Program, external_id: str | None) -> Member | None:
    """The program's member with this external id, if any (1 query; none without an id)."""
    if external_id is None:
        return None
    return Member.objects.filter(program=program, external_id=external_id).first()


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


MEMBER_PROFILE_FIELDS = (
    "external_id",
    "email",
    "first_name",
    "last_name",
    "birthday",
    "email_consent",
    "language",
)


def member_update(*, member: Member, **changes: Any) -> Member:
    """Change profile fields of a member (not balances, not status: see `member_set_status`).
    An anonymised member's profile stays erased (`InvalidInput`).
    Writes only the changed columns, so balances posted meanwhile are never overwritten.
    Refusals: `Conflict` (the external id is another member's), `DuplicateEmail` (the email is
    another member's, case-insensitively), `InvalidInput`."""
    unknown = set(changes) - set(MEMBER_PROFILE_FIELDS)
    if member.anonymised_at is not None and changes:
        raise errors.InvalidInput("This member was anonymised: the profile cannot be changed.")
    if unknown:
        raise errors.InvalidInput(f"Not a profile field: {', '.join(sorted(unknown))}.", fields=sorted(unknown))
    if "email" in changes:
        changes["email"] = (changes["email"] or "").strip().lower()
    if "external_id" in changes:
        changes["external_id"] = str(changes["external_id"] or "").strip() or None
    for name, value in changes.items():
        setattr(member, name, value)
    full_clean(member, exclude=["referral_code", "user", "program", "referred_by"])
    if changes.get("email") and member_email_taken(
        program_id=member.program_id, email=changes["email"], exclude_member_id=member.pk
    ):
        raise _duplicate_email(changes["email"])
    if changes:
        try:
            with transaction.atomic():
                member.save(update_fields=list(changes))
        except IntegrityError as exc:
            if _violated_constraint(exc) == MEMBER_UNIQUE_EMAIL:
                raise _duplicate_email(member.email) from exc
            raise errors.Conflict(
                "Another member of this program has this external id.", fields={"external_id": ["already used"]}
            ) from exc
    return member


def deletion_request_create(*, member: Member, via: str = "portal", now: dt.datetime | None = None) -> DeletionRequest:
    """The member asks for their data to be erased. Idempotent: while a request waits for
    staff, asking again returns it. Refused (`InvalidInput`) for an anonymised member."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = member_for_update(member_id=member.pk).get()
        if locked.anonymised_at is not None:
            raise errors.InvalidInput("This member was already anonymised.")
        waiting = DeletionRequest.objects.filter(member=locked, status=DeletionRequest.Status.OPEN).first()
        if waiting is not None:
            return waiting
        return DeletionRequest.objects.create(program_id=locked.program_id, member=locked, requested_at=now, via=via)


def deletion_request_decide(
    *, request: DeletionRequest, confirm: bool, actor: Any = None, note: str = "", now: dt.datetime | None = None
) -> DeletionRequest:
    """Staff's decision on a waiting request: confirming anonymises the member
    (`member_anonymise`), declining records the note. A decided request is left as it is."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = DeletionRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != DeletionRequest.Status.OPEN:
            return locked
        locked.status = DeletionRequest.Status.CONFIRMED if confirm else DeletionRequest.Status.DECLINED
        locked.decided_at = now
        locked.decided_by = actor if getattr(actor, "pk", None) else None
        locked.note = note[:255]
        locked.save(update_fields=["status", "decided_at", "decided_by", "note"])
        member = member_for_update(member_id=locked.member_id).get()
        # The member is told (email outbox): sent before the anonymisation so that the message
        # is addressed and written with the person's data of this moment.
        deletion_request_decided_in_transaction.send(
            sender=DeletionRequest,
            program=member.program,
            member=member,
            request=locked,
            confirm=confirm,
            note=locked.note,
            now=now,
        )
        if confirm:
            member_anonymise(member=member, actor=actor, now=now)
    return locked


def member_anonymise(*, member: Member, actor: Any = None, now: dt.datetime | None = None) -> Member:
    """Erase the person behind a member and keep the points account (docs/decisions.md):
    names, email, birthday and external id cleared, a new referral code (old links stop
    working), email consent off, status blocked, `anonymised_at` stamped, and the portal login
    user deleted (no link or session opens the account any more). The ledger, activities and
    coupons are untouched, so balances stay equal to the entries (`verify_ledger`). Receivers
    of `member_anonymised_in_transaction` erase what higher apps hold (cards, email
    addresses) in the same transaction. Idempotent: an anonymised member is returned as is."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = member_for_update(member_id=member.pk).get()
        if locked.anonymised_at is not None:
            return locked
        old_status = locked.status
        user_id = locked.user_id
        erased = {
            "external_id": None,
            "email": "",
            "first_name": "",
            "last_name": "",
            "birthday": None,
            "email_consent": False,
            "referral_code": new_referral_code(),
            "status": Member.Status.BLOCKED,
            "user": None,
            "anonymised_at": now,
        }
        for name, value in erased.items():
            setattr(locked, name, value)
        # Columns only: the cached balances are the posting's and are never written here.
        locked.save(update_fields=list(erased))
        if user_id is not None:
            get_user_model()._default_manager.filter(pk=user_id, is_staff=False, is_superuser=False).delete()
        member_anonymised_in_transaction.send(
            sender=Member, program=locked.program, member=locked, actor=actor, now=now
        )
        if old_status != Member.Status.BLOCKED:
            transaction.on_commit(
                lambda: member_status_changed.send(
                    sender=Member,
                    program=locked.program,
                    member=locked,
                    old_status=old_status,
                    new_status=Member.Status.BLOCKED,
                    actor=actor,
                )
            )
    for name in ("external_id", "email", "first_name", "last_name", "birthday", "email_consent", "referral_code"):
        setattr(member, name, getattr(locked, name))
    member.status, member.user_id, member.anonymised_at = locked.status, None, locked.anonymised_at
    return locked
