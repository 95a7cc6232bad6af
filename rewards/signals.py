"""Signals of the rewards app, for higher apps (notifications, webhooks). Sent after commit."""

from django.dispatch import Signal

# kwargs: program, redemption (the issued coupon), member_id
reward_redeemed = Signal()
# kwargs: program, redemption
redemption_used = Signal()
# kwargs: program, redemption, refunded (bool: the points came back)
redemption_cancelled = Signal()
# kwargs: program, redemption, refunded
redemption_expired = Signal()
