"""Wallet cards for the portal's "My card" page (docs/wallet.md): an Apple Wallet .pkpass and a
Google Wallet save link per card, built from the installation's certificates and keys. Without
them the `*_enabled()` functions say False and the page hides the buttons."""

from .apple import apple_wallet_enabled, pkpass_for_card
from .branding import program_logo_png
from .errors import CardNotEligible, WalletError, WalletNotConfigured
from .google import google_save_url_for_card, google_wallet_enabled

PKPASS_CONTENT_TYPE = "application/vnd.apple.pkpass"

__all__ = [
    "PKPASS_CONTENT_TYPE",
    "CardNotEligible",
    "WalletError",
    "WalletNotConfigured",
    "apple_wallet_enabled",
    "google_save_url_for_card",
    "google_wallet_enabled",
    "pkpass_for_card",
    "program_logo_png",
]
