"""Signals the ledger sends so higher apps can react without the ledger importing them.

Most are sent after the transaction commits; the ledger never depends on a receiver running.
The `*_in_transaction` ones are sent inside the writing transaction, after the writes: their
receivers write rows that must commit or roll back with the change (the email outbox), with
one short statement and no slow work. An exception there rolls the change back.
"""

from django.dispatch import Signal

# kwargs: program, member_id, balance (Balance after the post, or None), entries (list[LedgerEntry] of that member)
points_posted = Signal()
# Inside the posting's transaction: the same kwargs, plus `context` (a dict the caller of the
# use case passed, e.g. {"notify_member": True, "reason": ...} for a staff adjustment).
points_posted_in_transaction = Signal()
# kwargs: program, member, channel
member_enrolled = Signal()
# Inside the enrolment's transaction: program, member, channel.
member_enrolled_in_transaction = Signal()
# kwargs: program, member, old_status, new_status, actor
member_status_changed = Signal()
# Inside `member_anonymise`'s transaction, after the member's own columns were erased:
# program, member, actor, now. Receivers erase what their app holds about the person (cards
# blocked, email addresses blanked) in the same transaction.
member_anonymised_in_transaction = Signal()
# Inside `deletion_request_decide`'s transaction: program, member, request (the DeletionRequest,
# its decision set), confirm (bool), note (staff's reason), now. For a confirmation it is sent
# BEFORE the member is anonymised, so a receiver still reads the person's address and name
# (the email outbox captures the message that tells them; docs/portal.md).
deletion_request_decided_in_transaction = Signal()
# kwargs: job ("expire_points" / "release_pending_points"), as_of, lots, points, members
ledger_job_finished = Signal()
# kwargs: program, actor (the demo staff user), now, stdout. Sent by `manage.py load_demo` on
# every run; receivers add their app's demo data once (idempotent) and may print a line.
demo_loaded = Signal()
# No kwargs. Sent by the API-key services when keys changed without their model's save signal
# (a bulk revoke), so that this process forgets the keys it remembers (loyalty/api/auth.py).
api_keys_changed = Signal()
