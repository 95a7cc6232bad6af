"""Domain errors of the cards app. Each carries a stable `code` and `details` like the ledger's
(`loyalty.errors`), so the API maps them the same way: `NotFound` -> 404, `Conflict` -> 409,
`InvalidInput` -> 400, any other `LoyaltyError` -> 422.
"""

from __future__ import annotations

from loyalty.errors import Conflict, InvalidInput, LoyaltyError, NotFound


class InvalidCardNumber(InvalidInput):
    """Not digits, a wrong length or a wrong check digit: refused before any query."""

    code = "invalid_card_number"


class CardNotFound(NotFound):
    """No card with this number in this program (a card of another program is not found)."""

    code = "card_not_found"


class CardNotAssignable(LoyaltyError):
    """Only unassigned stock can be assigned; details carry the card's `status`."""

    code = "card_not_assignable"


class CardBlocked(LoyaltyError):
    """A blocked or void card identifies nobody; details carry the card's `status`."""

    code = "card_blocked"


class CardStatusInvalid(LoyaltyError):
    """Block, unblock or replace asked of a card in a status that does not allow it."""

    code = "card_status_invalid"


class WrongPin(LoyaltyError):
    """The claim PIN does not match; details `locked: true` once too many attempts failed."""

    code = "wrong_pin"


class AlreadyClaimed(Conflict):
    """A card is claimed once."""

    code = "already_claimed"


class BatchStateInvalid(LoyaltyError):
    """The batch's status does not allow the operation (resuming a discarded batch,
    discarding a complete one, printing one that is not complete). Details carry the
    batch's `status`."""

    code = "batch_state_invalid"
