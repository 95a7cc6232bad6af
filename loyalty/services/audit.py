"""The staff audit trail: one `StaffAction` row per thing a member of staff does to a member
(docs/back-office.md, "A member's page"). Append-only (a trigger refuses UPDATE and DELETE).

Callers record the action in the transaction of the action itself, so that a refused or
rolled-back action leaves no audit row and a done one always has its row."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.utils import timezone

from loyalty import errors
from loyalty.models import Member, Program, StaffAction


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    """Dates and decimals as the JSON encoder writes them (a JSONField stores plain JSON)."""
    return json.loads(json.dumps(details, cls=DjangoJSONEncoder))


def staff_action_record(
    *,
    actor: Any,
    action: str,
    api_key: Any = None,
    program: Program,
    member: Member | None = None,
    reason: str = "",
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> StaffAction:
    """Write one audit row. `reason` is required for the actions that move points or money
    (`StaffAction.REASON_REQUIRED`): `ReasonRequired` otherwise, nothing written. An action an
    integration did through the API has no staff user: pass its `api_key` instead (its prefix
    and name go into `details`)."""
    if action not in StaffAction.Action.values:
        raise errors.InvalidInput(f"Unknown staff action {action!r}.", field="action")
    if api_key is not None and getattr(api_key, "pk", None) and (actor is None or not getattr(actor, "pk", None)):
        actor = None
        details = {**(details or {}), "api_key": api_key.prefix, "api_key_name": api_key.name}
    elif actor is None or not getattr(actor, "pk", None):
        raise errors.InvalidInput("A staff action needs its staff user.", field="actor")
    reason = (reason or "").strip()
    if action in StaffAction.REASON_REQUIRED and not reason:
        raise errors.ReasonRequired("This action needs a reason.", field="reason")
    if member is not None and member.program_id != program.pk:
        raise errors.InvalidInput("The member belongs to another program.", field="member")
    return StaffAction.objects.create(
        program=program,
        member=member,
        actor=actor,
        action=action,
        at=now or timezone.now(),
        reason=reason[:255],
        details=_plain(details or {}),
    )


def member_audit(*, member: Member, limit: int = 30) -> QuerySet[StaffAction]:
    """The member's audit trail, newest first (index staff_action_member)."""
    return StaffAction.objects.filter(member=member).select_related("actor").order_by("-id")[:limit]
