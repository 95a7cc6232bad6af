"""Domain errors of the ledger. Each carries a stable `code` (docs/api.md's 4xx codes) and details.

The API maps `NotFound` to 404, `Conflict` to 409, `InvalidInput` to 400 and every other
`LoyaltyError` to 422. A raised error always leaves the database untouched: services raise
inside their transaction.
"""

from __future__ import annotations

from typing import Any


class LoyaltyError(Exception):
    code = "loyalty_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(LoyaltyError):
    code = "invalid"


class InvalidPoints(InvalidInput):
    code = "invalid_points"


class NotFound(LoyaltyError):
    code = "not_found"


class MemberNotFound(NotFound):
    code = "member_not_found"


class OrderNotFound(NotFound):
    code = "order_not_found"


class EntryNotFound(NotFound):
    code = "entry_not_found"


class Conflict(LoyaltyError):
    code = "conflict"


class DuplicateEmail(Conflict):
    """Another member of the program has this email (case-insensitively)."""

    code = "duplicate_email"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class AlreadyReversed(Conflict):
    code = "already_reversed"


class InsufficientPoints(LoyaltyError):
    code = "insufficient_points"


class MemberBlocked(LoyaltyError):
    code = "member_blocked"


class RefundExceedsOrder(LoyaltyError):
    code = "refund_exceeds_order"


class ReasonRequired(InvalidInput):
    code = "reason_required"


class BelowMinimumRedemption(LoyaltyError):
    code = "below_minimum_redemption"


class NotAllowed(LoyaltyError):
    """The staff user may not do this (a permission, a role's limit, four eyes)."""

    code = "not_allowed"


class SelfApproval(NotAllowed):
    """An adjustment request is decided by another staff user than its requester."""

    code = "self_approval"


class AlreadyDecided(Conflict):
    code = "already_decided"
