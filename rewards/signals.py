"""Signals of the rewards app, for higher apps (notifications, webhooks). Sent after commit,
except the `*_in_transaction` ones: sent inside the writing transaction, right after its writes,
for receivers that write rows which must commit or roll back with it (the email outbox), with
one short statement. An exception there rolls the redemption back."""

from django.dispatch import Signal

# kwargs: program, redemption (the issued coupon), member_id
reward_redeemed = Signal()
# Inside the redemption's transaction (points spent on a reward, not a gift): program,
# redemption (saved, its `reward` set), member_id.
reward_redeemed_in_transaction = Signal()
# kwargs: program, redemption
redemption_used = Signal()
# kwargs: program, redemption, refunded (bool: the points came back)
redemption_cancelled = Signal()
# kwargs: program, redemption, refunded
redemption_expired = Signal()
