"""Signals of the cards app, for higher apps (workflows, notifications). Sent after commit."""

from django.dispatch import Signal

# kwargs: program, member (who owns the card now), card. A customer claimed a card with its PIN.
card_claimed = Signal()
