"""Guardrails on staff adjustments (issue 13 §5; docs/back-office.md, "A member's page").

Every staff adjustment (the member page's, the admin's adjustment form) goes through
`staff_adjust`, which checks, for the acting user and the member's program:

- the confirmation step: more than `Program.adjustment_confirm_above` points (either sign),
  or a debit that would leave the member owing points, is posted only once the user has
  confirmed it (the caller shows `AdjustmentCheck`: the new balance and the debt);
- the approval: more than `Program.adjustment_approval_above`, or more than the user's own
  limit (`adjustment_limit`: a Manager's and a Support user's per-program limits; Owners and
  superusers have none), becomes an `AdjustmentRequest` that another staff user with
  `loyalty.approve_adjustment` approves (posted once) or rejects (with a reason).

Each outcome writes its `StaffAction` row in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from loyalty import errors
from loyalty.models import AdjustmentRequest, Member, StaffAction

from .audit import staff_action_record
from .checks import check_points
from .points import points_adjust
from .posting import PostResult

OWNER, MANAGER, SUPPORT = "owner", "manager", "support"


def staff_roles(user: Any) -> set[str]:
    """The role groups of `user` ("Owner", "Manager", "Support"; matched whatever the case)."""
    cached = getattr(user, "_staff_roles", None)
    if cached is None:
        names = user.groups.values_list("name", flat=True) if getattr(user, "pk", None) else []
        cached = {name.lower() for name in names} & {OWNER, MANAGER, SUPPORT}
        user._staff_roles = cached
    return cached


def adjustment_limit(user: Any, program: Any) -> int | None:
    """The most `user` may adjust in one go in `program` without a second staff member's
    approval; None: no limit (a superuser or an Owner). A Manager has the program's manager
    limit, a Support user its support limit (the higher one when in both). A user with the
    permission but none of these roles has the support limit."""
    if getattr(user, "is_superuser", False):
        return None
    roles = staff_roles(user)
    if OWNER in roles:
        return None
    if MANAGER in roles:
        return program.manager_adjustment_limit
    return program.support_adjustment_limit


def can_adjust(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm("loyalty.adjust_points"))


def can_approve(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm("loyalty.approve_adjustment"))


@dataclass(frozen=True)
class AdjustmentCheck:
    """What an adjustment would do and what it needs before it is posted."""

    points: int
    available_before: int
    available_after: int
    debt_after: int
    confirm_reasons: list[str] = field(default_factory=list)
    approval_reason: str = ""
    limit: int | None = None

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.confirm_reasons) or bool(self.approval_reason)

    @property
    def needs_approval(self) -> bool:
        return bool(self.approval_reason)


def adjustment_check(*, user: Any, member: Member, points: int) -> AdjustmentCheck:
    """The guardrails for `user` adjusting `member` by `points` (read, nothing written). The
    new balance is estimated from the member's cached balances: a debit takes available
    points, then pending ones, and what is missing becomes a debt."""
    check_points(points, allow_negative=True)
    program = member.program
    size = abs(points)
    available, pending = member.available, member.pending
    if points > 0:
        after = available + points
    else:
        take_available = min(max(available, 0), size)
        rest = size - take_available
        after = available - take_available - (rest - min(pending, rest))
    debt_after = max(0, -after)
    reasons = []
    if size > program.adjustment_confirm_above:
        reasons.append(
            f"It is more than {program.adjustment_confirm_above:,} {program.points_name} "
            "(this program's confirmation threshold)."
        )
    if debt_after > max(0, -available):
        reasons.append(f"It leaves {member} owing {debt_after:,} {program.points_name}.")
    limit = adjustment_limit(user, program)
    approval = ""
    if program.adjustment_approval_above is not None and size > program.adjustment_approval_above:
        approval = (
            f"It is more than {program.adjustment_approval_above:,} {program.points_name}: "
            "another staff member must approve it."
        )
    elif limit is not None and size > limit:
        approval = (
            f"It is more than your limit of {limit:,} {program.points_name}: another staff member must approve it."
        )
    return AdjustmentCheck(
        points=points,
        available_before=available,
        available_after=after,
        debt_after=debt_after,
        confirm_reasons=reasons,
        approval_reason=approval,
        limit=limit,
    )


@dataclass
class StaffAdjustOutcome:
    """`confirm`: nothing written, show `check` and ask; `requested`: an approval request
    (`request`); `posted`: the adjustment was posted (`result`; `result.replayed` when the
    same form was sent before)."""

    status: str
    check: AdjustmentCheck
    result: PostResult | None = None
    request: AdjustmentRequest | None = None
    replayed: bool = False


def staff_adjust(
    *,
    actor: Any,
    member: Member,
    points: int,
    reason: str,
    idempotency_key: str,
    confirmed: bool = False,
    notify_member: bool = False,
    now: dt.datetime | None = None,
) -> StaffAdjustOutcome:
    """A staff adjustment with its guardrails (module docstring). `idempotency_key`: the
    form's, namespaced by the caller; it keys both the posting and the approval request, so
    a form sent twice posts (or asks) once."""
    if not can_adjust(actor):
        raise errors.NotAllowed("You may not adjust points.")
    reason = (reason or "").strip()
    if not reason:
        raise errors.ReasonRequired("An adjustment needs a reason.", field="reason")
    now = now or timezone.now()
    program = member.program
    existing = AdjustmentRequest.objects.filter(program=program, key=idempotency_key).first()
    check = adjustment_check(user=actor, member=member, points=points)
    if existing is not None:
        return StaffAdjustOutcome(status="requested", check=check, request=existing, replayed=True)
    if check.needs_confirmation and not confirmed:
        return StaffAdjustOutcome(status="confirm", check=check)
    if check.needs_approval:
        try:
            with transaction.atomic():
                request = AdjustmentRequest.objects.create(
                    program=program,
                    member=member,
                    points=points,
                    reason=reason[:255],
                    notify_member=notify_member,
                    why=check.approval_reason[:255],
                    key=idempotency_key,
                    requested_by=actor,
                    requested_at=now,
                )
                staff_action_record(
                    actor=actor,
                    action=StaffAction.Action.ADJUST_REQUESTED,
                    program=program,
                    member=member,
                    reason=reason,
                    details={"points": points, "request": request.pk, "why": check.approval_reason},
                    now=now,
                )
        except IntegrityError:  # the same form, sent twice at once: the first request stands
            request = AdjustmentRequest.objects.get(program=program, key=idempotency_key)
            return StaffAdjustOutcome(status="requested", check=check, request=request, replayed=True)
        return StaffAdjustOutcome(status="requested", check=check, request=request)
    with transaction.atomic():
        result = points_adjust(
            program=program,
            member_id=member.pk,
            points=points,
            reason=reason,
            actor=actor,
            idempotency_key=idempotency_key,
            now=now,
            notify_member=notify_member,
        )
        if not result.replayed:
            staff_action_record(
                actor=actor,
                action=StaffAction.Action.ADJUST,
                program=program,
                member=member,
                reason=reason,
                details={
                    "points": points,
                    "entries": [e.pk for e in result.entries],
                    "available_after": result.balance.available,
                    "confirmed": bool(check.needs_confirmation),
                },
                now=now,
            )
    return StaffAdjustOutcome(status="posted", check=check, result=result, replayed=result.replayed)


def _pending_request_locked(request_id: int, program_ids: Any) -> AdjustmentRequest:
    request = (
        AdjustmentRequest.objects.select_for_update(of=("self",))
        .select_related("member__program", "requested_by")
        .filter(pk=request_id, program_id__in=program_ids)
        .first()
    )
    if request is None:
        raise errors.NotFound("No such adjustment request.", request_id=request_id)
    return request


def _check_decider(request: AdjustmentRequest, decider: Any) -> None:
    if not can_approve(decider):
        raise errors.NotAllowed("You may not approve or reject adjustments.")
    if request.requested_by_id == decider.pk:
        raise errors.SelfApproval("You asked for this adjustment: another staff member must approve or reject it.")


@dataclass
class DecisionOutcome:
    request: AdjustmentRequest
    result: PostResult | None = None
    already: bool = False  # decided before (by this call's twin): nothing done now


def adjustment_request_approve(
    *, request_id: int, approver: Any, program_ids: Any, now: dt.datetime | None = None
) -> DecisionOutcome:
    """Approve a pending request and post it, once: the request's row is locked, so two
    approvers clicking at once post it once (the second finds it approved: `already`).
    `program_ids`: the programs the approver may act on (another program's request: NotFound).
    Refused (nothing written): `NotAllowed` without `loyalty.approve_adjustment`,
    `SelfApproval` for the requester, `AlreadyDecided` for a rejected request."""
    now = now or timezone.now()
    with transaction.atomic():
        request = _pending_request_locked(request_id, program_ids)
        _check_decider(request, approver)
        if request.status == AdjustmentRequest.Status.APPROVED:
            return DecisionOutcome(request=request, already=True)
        if request.status != AdjustmentRequest.Status.PENDING:
            raise errors.AlreadyDecided("This request was rejected.", request_id=request.pk)
        member = request.member
        result = points_adjust(
            program=member.program,
            member_id=member.pk,
            points=request.points,
            reason=request.reason,
            actor=request.requested_by,
            idempotency_key=f"approval:{request.pk}",
            now=now,
            notify_member=request.notify_member,
        )
        request.status = AdjustmentRequest.Status.APPROVED
        request.decided_by = approver
        request.decided_at = now
        request.entry = result.entries[0] if result.entries else None
        request.save(update_fields=["status", "decided_by", "decided_at", "entry"])
        staff_action_record(
            actor=approver,
            action=StaffAction.Action.ADJUST_APPROVED,
            program=member.program,
            member=member,
            reason=request.reason,
            details={
                "points": request.points,
                "request": request.pk,
                "requested_by": request.requested_by.get_username(),
                "entries": [e.pk for e in result.entries],
                "available_after": result.balance.available,
            },
            now=now,
        )
    return DecisionOutcome(request=request, result=result)


def adjustment_request_reject(
    *, request_id: int, approver: Any, reason: str, program_ids: Any, now: dt.datetime | None = None
) -> DecisionOutcome:
    """Reject a pending request with a reason (required); nothing is posted. Same refusals
    as `adjustment_request_approve`; an approved request cannot be rejected any more."""
    reason = (reason or "").strip()
    if not reason:
        raise errors.ReasonRequired("A rejection needs a reason.", field="reason")
    now = now or timezone.now()
    with transaction.atomic():
        request = _pending_request_locked(request_id, program_ids)
        _check_decider(request, approver)
        if request.status == AdjustmentRequest.Status.REJECTED:
            return DecisionOutcome(request=request, already=True)
        if request.status != AdjustmentRequest.Status.PENDING:
            raise errors.AlreadyDecided("This request was approved and posted already.", request_id=request.pk)
        request.status = AdjustmentRequest.Status.REJECTED
        request.decided_by = approver
        request.decided_at = now
        request.decision_reason = reason[:255]
        request.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
        staff_action_record(
            actor=approver,
            action=StaffAction.Action.ADJUST_REJECTED,
            program=request.program,
            member=request.member,
            reason=reason,
            details={"points": request.points, "request": request.pk, "asked_reason": request.reason},
            now=now,
        )
    return DecisionOutcome(request=request)
