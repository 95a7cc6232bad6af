"""Signals of the tiers app, for higher apps (workflows, notifications, webhooks).

Sent after the transaction that changed the tier commits; nothing here depends on a receiver.
`tier_changed_in_transaction` is sent inside that transaction, right after the writes, for
receivers that write rows which must commit or roll back with the change (the email outbox):
one short statement per batch of changes; an exception there rolls the change back.
"""

from django.dispatch import Signal

# kwargs: program, member_id, change (the saved TierChange: from_tier_id, to_tier_id, kind, ...)
tier_changed = Signal()
# Inside the transaction: program, changes (list of saved TierChange rows: one for a member's
# upgrade or a manual tier, a whole chunk for the nightly evaluation), notify_member (False for
# the tiers a member import sets: migrated customers are not told).
tier_changed_in_transaction = Signal()
