"""Signals of the workflows app, for higher apps (notifications).

All are sent inside the transaction of their event, right after its writes, for receivers
that write rows which must commit or roll back with it (the email outbox) with one short
statement; an exception there rolls the event back. workflows never imports the apps above it.
"""

from django.dispatch import Signal

# The birthday job paid a member's birthday (not sent for a replay): program, member_id,
# activity (the birthday activity), points (> 0), day (the local date celebrated).
birthday_awarded_in_transaction = Signal()

# A referral was rewarded by the friend's first qualifying purchase: program, referral (the
# Referral row, rewarded), friend, referrer (Member rows), friend_points, referrer_points
# (0 when the monthly cap or a blocked referrer gave the referrer nothing).
referral_rewarded_in_transaction = Signal()

# An automation's email action fired for a member: program, automation, member, period_key,
# facts (plain data for its template: "automation", "points", and "tier" / "coupon" when the
# automation has those actions). A receiver returns True when it queued the email.
automation_email_in_transaction = Signal()

# A budget's use first reached 80 % or 100 % of a limit in a period (workflows.budgets; once per
# budget, period and threshold): program, budget (plain data: scope, id, name, what, period,
# period_label, limit, used, percent), now. The notifications app queues the admin's email and
# the `budget.threshold` webhook event.
budget_threshold_in_transaction = Signal()
