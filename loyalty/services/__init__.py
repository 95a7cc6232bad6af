"""Every write of the loyalty core, one module per concern (docs/architecture.md):

- `posting`: the one posting function of the ledger (`points_post`) and the bulk credit;
- `ledger_sql`: the ledger's SQL, importable only by `posting` and `jobs` (import-linter);
- `points`: the point use cases (earn, earn several lots in one posting, adjust, redeem, restore,
  reverse, transfer, bulk credit);
- `jobs`: the set-based expiry and release of pending points;
- `members`, `activities`, `programs`: enrolment and profiles, stored activities, programs;
- `idempotency`: the one store of idempotency keys;
- `api_keys`: creating, changing and revoking API keys;
- `checks`: input checks that raise before anything is written;
- `audit`: the staff audit trail (`StaffAction` rows);
- `holds`: points held for review, released or rejected (docs/fraud.md);
- `adjustments`: staff adjustments with their guardrails (confirmation, approval, role limits).

Callers import from `loyalty.services`; the names below are its public surface.
"""

from .activities import activity_record
from .adjustments import (
    AdjustmentCheck,
    StaffAdjustOutcome,
    adjustment_check,
    adjustment_limit,
    adjustment_request_approve,
    adjustment_request_reject,
    staff_adjust,
)
from .api_keys import api_key_create, api_key_revoke, api_key_update
from .audit import member_audit, staff_action_record
from .holds import HELD_UNTIL, points_hold_reject, points_hold_release
from .idempotency import idempotency_key_claim, idempotency_key_namespaced, idempotency_key_settle
from .jobs import JobResult, points_expire, points_release
from .members import (
    MEMBER_PROFILE_FIELDS,
    deletion_request_create,
    deletion_request_decide,
    member_anonymise,
    member_email_taken,
    member_enrol,
    member_set_status,
    member_update,
)
from .points import (
    EarnAward,
    points_adjust,
    points_credit_bulk,
    points_earn,
    points_earn_many,
    points_redeem,
    points_restore,
    points_reverse_order,
    points_transfer,
)
from .posting import BALANCE_FIELDS, Balance, PostResult, points_post
from .programs import program_create, program_widget_off, program_widget_secret_rotate

__all__ = [
    "BALANCE_FIELDS",
    "HELD_UNTIL",
    "MEMBER_PROFILE_FIELDS",
    "AdjustmentCheck",
    "Balance",
    "EarnAward",
    "JobResult",
    "PostResult",
    "StaffAdjustOutcome",
    "activity_record",
    "adjustment_check",
    "adjustment_limit",
    "adjustment_request_approve",
    "adjustment_request_reject",
    "api_key_create",
    "api_key_revoke",
    "api_key_update",
    "deletion_request_create",
    "deletion_request_decide",
    "idempotency_key_claim",
    "idempotency_key_namespaced",
    "idempotency_key_settle",
    "member_anonymise",
    "member_audit",
    "member_email_taken",
    "member_enrol",
    "member_set_status",
    "member_update",
    "points_adjust",
    "points_credit_bulk",
    "points_earn",
    "points_earn_many",
    "points_expire",
    "points_hold_reject",
    "points_hold_release",
    "points_post",
    "points_redeem",
    "points_release",
    "points_restore",
    "points_reverse_order",
    "points_transfer",
    "program_create",
    "program_widget_off",
    "program_widget_secret_rotate",
    "staff_action_record",
    "staff_adjust",
]
