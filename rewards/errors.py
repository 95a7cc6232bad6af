"""Errors of the rewards app, on loyalty's error classes (so the API maps them: NotFound 404,
Conflict 409, InvalidInput 400, any other LoyaltyError 422)."""

from __future__ import annotations

from loyalty import errors


class RewardNotFound(errors.NotFound):
    code = "reward_not_found"


class RewardUnavailable(errors.LoyaltyError):
    """Inactive, outside its window, out of stock, above the member's tier, or the member's
    limit is reached; `details["reason"]` says which."""

    code = "reward_unavailable"


class CouponNotFound(errors.NotFound):
    code = "coupon_not_found"


class CouponAlreadyUsed(errors.Conflict):
    code = "coupon_already_used"


class CouponNotUsable(errors.LoyaltyError):
    """Cancelled or expired (`details["status"]`)."""

    code = "coupon_not_usable"
