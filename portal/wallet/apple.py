"""Apple Wallet store cards (.pkpass), signed with the installation's pass certificate.

A .pkpass is a zip of `pass.json`, the images, `manifest.json` (the SHA-1 of every other file,
as Apple requires) and `signature`: a detached PKCS #7 signature (DER) of manifest.json by the
pass certificate, carrying Apple's WWDR intermediate certificate. docs/wallet.md explains the
certificates, the settings and what updating installed passes would need.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.utils import translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from cards.models import Card

from .branding import PassColours, apple_images
from .credentials import load_certificate, load_private_key
from .errors import WalletNotConfigured
from .facts import CardFacts, card_facts

logger = logging.getLogger(__name__)

BARCODE_FORMATS = {"code128": "PKBarcodeFormatCode128", "qr": "PKBarcodeFormatQR"}
# Entries of the zip carry this fixed time: the same pass builds the same bytes.
ZIP_TIME = (2000, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class AppleSigner:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    wwdr: x509.Certificate

    def sign(self, data: bytes) -> bytes:
        """Detached PKCS #7 signature (DER) of `data`, with the WWDR certificate included."""
        # set_data first: the builder's set_data starts a new builder without the extra certificates.
        builder = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(data)
            .add_signer(self.certificate, self.key, hashes.SHA256())
            .add_certificate(self.wwdr)
        )
        return builder.sign(
            serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
        )


def _public_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@functools.lru_cache(maxsize=4)
def _load_signer(cert: str, key: str, password: str, wwdr: str, pass_type_id: str) -> AppleSigner | None:
    """The parsed credentials, or None (logged once per process and setting values) when they
    cannot be read or do not belong together."""
    try:
        certificate = load_certificate(cert)
        private_key = load_private_key(key, password)
        intermediate = load_certificate(wwdr)
    except (OSError, ValueError, TypeError) as exc:
        logger.error("Apple Wallet is off: its certificate, key or WWDR certificate cannot be read (%s)", exc)
        return None
    if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        logger.error("Apple Wallet is off: the pass key must be an RSA or EC key")
        return None
    if _public_der(private_key.public_key()) != _public_der(certificate.public_key()):
        logger.error("Apple Wallet is off: WALLET_APPLE_KEY is not the key of WALLET_APPLE_CERT")
        return None
    uids = certificate.subject.get_attributes_for_oid(NameOID.USER_ID)
    if uids and uids[0].value != pass_type_id:
        # Apple's pass certificates name their pass type in the subject's UID: a mismatch makes
        # iPhones refuse the pass, but a test or private certificate may have no UID at all.
        logger.warning(
            "WALLET_APPLE_PASS_TYPE_ID is %r but the pass certificate is for %r", pass_type_id, uids[0].value
        )
    return AppleSigner(certificate=certificate, key=private_key, wwdr=intermediate)


def _settings() -> tuple[str, str, str, str, str, str]:
    return (
        settings.WALLET_APPLE_PASS_TYPE_ID,
        settings.WALLET_APPLE_TEAM_ID,
        settings.WALLET_APPLE_CERT,
        settings.WALLET_APPLE_KEY,
        settings.WALLET_APPLE_KEY_PASSWORD,
        settings.WALLET_APPLE_WWDR_CERT,
    )


def apple_signer() -> AppleSigner | None:
    """The installation's pass signer, or None when Apple Wallet is not (usably) configured.
    Parses the credentials once per process."""
    pass_type_id, team_id, cert, key, password, wwdr = _settings()
    if not all((pass_type_id, team_id, cert, key, wwdr)):
        return None
    return _load_signer(cert, key, password, wwdr, pass_type_id)


def apple_wallet_enabled() -> bool:
    """True when every Apple setting is set and the credentials load; never raises."""
    return apple_signer() is not None


def apple_authentication_token(serial_number: str) -> str:
    """The token a pass presents to the pass web service: derived from the serial number, so
    the service can check it without storing it (at least 16 characters, as Apple requires)."""
    return salted_hmac("portal.wallet.apple-pass", serial_number, algorithm="sha256").hexdigest()


def _field(key: str, label: str, value, **extra) -> dict:
    return {"key": key, "label": label, "value": value, **extra}


def pass_json(facts: CardFacts) -> dict:
    """The pass.json of a card, in the active language."""
    colours: PassColours = facts.colours
    barcode_format = BARCODE_FORMATS[settings.WALLET_BARCODE_FORMAT]
    store_card: dict[str, list[dict]] = {
        "primaryFields": [
            _field(
                "balance",
                facts.points_name,
                facts.balance,
                numberStyle="PKNumberStyleDecimal",
                changeMessage=_("Your balance is now %@"),
            )
        ],
        "secondaryFields": [],
        "auxiliaryFields": [],
        "backFields": [_field("number", _("Card number"), facts.number)],
    }
    if facts.tier_name:
        store_card["secondaryFields"].append(
            _field("tier", _("Tier"), facts.tier_name, changeMessage=_("Your tier is now %@"))
        )
    if facts.member_name:
        store_card["auxiliaryFields"].append(_field("member", _("Member"), facts.member_name))
    account = _("See your points, rewards and history at %(url)s") % {"url": facts.portal_url}
    store_card["backFields"].append(_field("portal", _("Your account"), account))
    if facts.terms:
        store_card["backFields"].append(_field("terms", _("Program terms"), facts.terms))

    data: dict = {
        "formatVersion": 1,
        "passTypeIdentifier": settings.WALLET_APPLE_PASS_TYPE_ID,
        "teamIdentifier": settings.WALLET_APPLE_TEAM_ID,
        "serialNumber": facts.number,
        "organizationName": facts.program.name,
        "description": _("%(program)s loyalty card") % {"program": facts.program.name},
        "logoText": facts.program.name,
        "foregroundColor": colours.css(colours.foreground),
        "backgroundColor": colours.css(colours.background),
        "labelColor": colours.css(colours.label),
        "sharingProhibited": True,  # a member's card, not a pass to hand around
        "barcodes": [
            {
                "format": barcode_format,
                "message": facts.number,
                "messageEncoding": "iso-8859-1",
                "altText": facts.number,
            }
        ],
        "storeCard": store_card,
    }
    if settings.WALLET_APPLE_WEB_SERVICE_URL:
        data["webServiceURL"] = settings.WALLET_APPLE_WEB_SERVICE_URL
        data["authenticationToken"] = apple_authentication_token(facts.number)
    return data


def pkpass_for_card(card: Card) -> bytes:
    """The signed .pkpass (zip bytes) of an active card of a member. Raises WalletNotConfigured
    without usable Apple settings and CardNotEligible for another card. Queries: those of
    `card_facts` (1-3). Serve it as `application/vnd.apple.pkpass`."""
    signer = apple_signer()
    if signer is None:
        raise WalletNotConfigured("Apple Wallet is not configured (WALLET_APPLE_* settings, docs/wallet.md)")
    facts = card_facts(card)
    with translation.override(facts.language):
        document = pass_json(facts)
    files: dict[str, bytes] = {"pass.json": json.dumps(document, ensure_ascii=False).encode()}
    files.update(apple_images(slug=facts.program.slug, brand_color=facts.program.brand_color, name=facts.program.name))
    manifest = json.dumps(
        {name: hashlib.sha1(data).hexdigest() for name, data in files.items()},  # noqa: S324 (Apple's format)
        sort_keys=True,
    ).encode()
    files["manifest.json"] = manifest
    files["signature"] = signer.sign(manifest)

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out.getvalue()
