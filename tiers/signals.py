"""Signals of the tiers app, for higher apps (workflows, notifications, webhooks).

Sent after the transaction that changed the tier commits; nothing here depends on a receiver.
"""

from django.dispatch import Signal

# kwargs: program, member_id, change (the saved TierChange: from_tier_id, to_tier_id, kind, ...)
tier_changed = Signal()
