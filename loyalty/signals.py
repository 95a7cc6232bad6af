"""Signals the ledger sends so higher apps can react without the ledger importing them.

All are sent after the transaction commits; the ledger never depends on a receiver running.
"""

from django.dispatch import Signal

# kwargs: program, member_id, balance (Balance after the post, or None), entries (list[LedgerEntry] of that member)
points_posted = Signal()
# kwargs: program, member, channel
member_enrolled = Signal()
# kwargs: program, member, old_status, new_status, actor
member_status_changed = Signal()
# kwargs: job ("expire_points" / "release_pending_points"), as_of, lots, points, members
ledger_job_finished = Signal()
# kwargs: program, actor (the demo staff user), now, stdout. Sent by `manage.py load_demo` on
# every run; receivers add their app's demo data once (idempotent) and may print a line.
demo_loaded = Signal()
# No kwargs. Sent by the API-key services when keys changed without their model's save signal
# (a bulk revoke), so that this process forgets the keys it remembers (loyalty/api/auth.py).
api_keys_changed = Signal()
