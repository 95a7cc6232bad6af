"""Signals of the cards app, for higher apps (workflows, notifications). `card_claimed` is
sent after commit; the import's tier signals are sent inside the import (docs/cards.md,
"Tiers"), because cards may not import the tiers app (pyproject.toml, import-linter)."""

from django.dispatch import Signal

# kwargs: program, member (who owns the card now), card. A customer claimed a card with its PIN.
card_claimed = Signal()
# Inside the claim's transaction, right after its writes: program, member, card, points_moved
# (the points an anonymous card's member handed over, 0 if none). For receivers that write rows
# which must commit or roll back with the claim (the email outbox).
card_claimed_in_transaction = Signal()

# kwargs: program, names (the distinct tier names of an import file). Each receiver returns the
# names that are not tiers of the program (compared case-insensitively); the dry run and the
# apply turn them into row errors. With no receiver, every name is unknown.
import_tier_names_check = Signal()

# kwargs: program, member_import, assignments [(member id, tier name), ...], actor, now. Sent
# INSIDE the apply transaction: a receiver that raises makes the whole import fail (nothing
# imported). The receiver gives each member the named tier as a manual tier.
import_tiers_assign = Signal()
