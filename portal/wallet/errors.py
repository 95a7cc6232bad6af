"""Refusals of the wallet-card builders (docs/wallet.md)."""


class WalletError(Exception):
    """Base of the wallet refusals; `code` is stable for callers and logs."""

    code = "wallet_error"


class WalletNotConfigured(WalletError):
    """The installation has no (usable) credentials for this wallet: hide its button."""

    code = "wallet_not_configured"


class CardNotEligible(WalletError):
    """Only an active card of a member gets a wallet pass."""

    code = "card_not_eligible"
