"""Google Wallet "save" links for loyalty cards: a JWT signed (RS256) with the issuer's service
account key, carrying the program's loyalty class and the card's loyalty object.

The object and class are defined inline, so no call to Google's API is needed to hand out a
link; Google creates them on the first save (a class that already exists is not changed by a
save link: the REST API changes it, docs/wallet.md). Field names follow Google's Wallet REST
reference (LoyaltyClass, LoyaltyObject, the JWT's payload), as recorded in docs/wallet.md.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from cards.models import Card
from loyalty.models import Program

from .credentials import load_private_key
from .errors import WalletNotConfigured
from .facts import CardFacts, card_facts

logger = logging.getLogger(__name__)

SAVE_URL = "https://pay.google.com/gp/v/save/{token}"
BARCODE_TYPES = {"code128": "CODE_128", "qr": "QR_CODE"}


@functools.lru_cache(maxsize=4)
def _load_key(value: str) -> rsa.RSAPrivateKey | None:
    try:
        key = load_private_key(value)
    except (OSError, ValueError, TypeError) as exc:
        logger.error("Google Wallet is off: WALLET_GOOGLE_PRIVATE_KEY cannot be read (%s)", exc)
        return None
    if not isinstance(key, rsa.RSAPrivateKey):
        logger.error("Google Wallet is off: the service account key must be an RSA key")
        return None
    return key


def google_key() -> rsa.RSAPrivateKey | None:
    """The service account's key (parsed once per process), or None when Google Wallet is not
    (usably) configured."""
    if not (
        settings.WALLET_GOOGLE_ISSUER_ID
        and settings.WALLET_GOOGLE_SERVICE_ACCOUNT_EMAIL
        and settings.WALLET_GOOGLE_PRIVATE_KEY
    ):
        return None
    return _load_key(settings.WALLET_GOOGLE_PRIVATE_KEY)


def google_wallet_enabled() -> bool:
    """True when the issuer id, the service account and its key are set and the key loads;
    never raises."""
    return google_key() is not None


def class_id(program: Program) -> str:
    """`<issuer id>.<prefix>-program-<slug>`: one loyalty class per program (a slug holds only
    the letters, digits, '-' and '_' that Google allows)."""
    return f"{settings.WALLET_GOOGLE_ISSUER_ID}.{settings.WALLET_GOOGLE_ID_PREFIX}-program-{program.slug}"


def object_id(card_number: str) -> str:
    """`<issuer id>.<prefix>-card-<number>`: card numbers are unique and never reused."""
    return f"{settings.WALLET_GOOGLE_ISSUER_ID}.{settings.WALLET_GOOGLE_ID_PREFIX}-card-{card_number}"


def program_logo_url(program: Program) -> str:
    """The program's logo address, else the installation's, else the portal's generated logo
    (`portal.wallet.program_logo_png`, which the portal serves at this address)."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return program.logo_url or settings.WALLET_GOOGLE_LOGO_URL or f"{base}/p/{program.slug}/wallet/logo.png"


def _localized(value: str, language: str) -> dict:
    return {"defaultValue": {"language": language, "value": value}}


def loyalty_class(facts: CardFacts) -> dict:
    """The program's LoyaltyClass, in the program's language (shared by all its members)."""
    program = facts.program
    with translation.override(program.language):
        return {
            "id": class_id(program),
            "issuerName": program.name,
            "programName": program.name,
            "programLogo": {
                "sourceUri": {"uri": program_logo_url(program)},
                "contentDescription": _localized(program.name, program.language),
            },
            "hexBackgroundColor": program.brand_color,
            "reviewStatus": "UNDER_REVIEW",
            "accountIdLabel": _("Card number"),
            "accountNameLabel": _("Member"),
            "homepageUri": {"uri": facts.portal_url, "description": _("Your account")},
        }


def loyalty_object(facts: CardFacts) -> dict:
    """The card's LoyaltyObject, in the member's language."""
    with translation.override(facts.language):
        obj: dict = {
            "id": object_id(facts.number),
            "classId": class_id(facts.program),
            "state": "ACTIVE",
            "accountId": facts.number,
            "loyaltyPoints": {"label": facts.points_name, "balance": {"int": facts.balance}},
            "barcode": {
                "type": BARCODE_TYPES[settings.WALLET_BARCODE_FORMAT],
                "value": facts.number,
                "alternateText": facts.number,
            },
        }
        if facts.member_name:
            obj["accountName"] = facts.member_name
        if facts.tier_name:
            obj["textModulesData"] = [{"id": "tier", "header": _("Tier"), "body": facts.tier_name}]
        if facts.terms:
            obj.setdefault("textModulesData", []).append(
                {"id": "terms", "header": _("Program terms"), "body": facts.terms}
            )
        return obj


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not a web origin: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def save_claims(card: Card, origins: Iterable[str] = ()) -> dict:
    """The claims of the save link's JWT (see `google_save_url_for_card`)."""
    facts = card_facts(card)
    allowed = [_origin(o) for o in origins] or [_origin(settings.PUBLIC_BASE_URL)]
    return {
        "iss": settings.WALLET_GOOGLE_SERVICE_ACCOUNT_EMAIL,
        "aud": "google",
        "typ": "savetowallet",
        "iat": int(time.time()),
        "origins": list(dict.fromkeys(allowed)),
        "payload": {"loyaltyClasses": [loyalty_class(facts)], "loyaltyObjects": [loyalty_object(facts)]},
    }


def google_save_url_for_card(card: Card, origins: Iterable[str] = ()) -> str:
    """The "Add to Google Wallet" address of an active card of a member. `origins` are the web
    origins of the pages that show the button (default: PUBLIC_BASE_URL's). Raises
    WalletNotConfigured without usable Google settings, CardNotEligible for another card and
    ValueError for an origin that is not http(s). Queries: those of `card_facts` (1-3)."""
    key = google_key()
    if key is None:
        raise WalletNotConfigured("Google Wallet is not configured (WALLET_GOOGLE_* settings, docs/wallet.md)")
    token = jwt.encode(save_claims(card, origins), key, algorithm="RS256")
    return SAVE_URL.format(token=token)
