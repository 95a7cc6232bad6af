"""Wallet cards built and checked offline: a throwaway certificate chain (root -> "WWDR"
intermediate -> pass certificate) and throwaway RSA keys stand in for Apple's and Google's."""

import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from decimal import Decimal
from unittest import mock

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from cards.models import Card
from loyalty.services.points import points_adjust
from portal import wallet
from portal.wallet import apple, branding, credentials, google
from portal.wallet.branding import contrast_ratio, pass_colours
from tests.cards.factories import CardFactory
from tests.loyalty.factories import MemberFactory, ProgramFactory
from tests.tiers.factories import TierFactory
from tiers.services import tier_set_manual

PASS_TYPE_ID = "pass.test.loyalty"
TEAM_ID = "TEAM123456"
KEY_PASSWORD = "throwaway-password"


# --- a throwaway PKI ---------------------------------------------------------------------------


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(subject, issuer, public_key, signing_key, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(signing_key, hashes.SHA256())


def _name(*attributes) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Files of a root CA, an intermediate standing in for Apple's WWDR certificate (written as
    DER, like Apple's download), a pass certificate with its key (plain and encrypted PEM), a
    key of no certificate, and a Google service account key."""
    folder = tmp_path_factory.mktemp("pki")
    root_key, wwdr_key, pass_key, stray_key, google_key = _key(), _key(), _key(), _key(), _key()
    root_name = _name((NameOID.COMMON_NAME, "Test Root CA"))
    root = _certificate(root_name, root_name, root_key.public_key(), root_key, ca=True)
    wwdr_name = _name((NameOID.COMMON_NAME, "Test WWDR Intermediate"))
    wwdr = _certificate(wwdr_name, root_name, wwdr_key.public_key(), root_key, ca=True)
    pass_name = _name(
        (NameOID.USER_ID, PASS_TYPE_ID),
        (NameOID.COMMON_NAME, f"Pass Type ID: {PASS_TYPE_ID}"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, TEAM_ID),
    )
    pass_cert = _certificate(pass_name, wwdr_name, pass_key.public_key(), wwdr_key, ca=False)

    def pem_key(key, password=None):
        encryption = (
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
        )
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    files = {
        "root.pem": root.public_bytes(serialization.Encoding.PEM),
        "wwdr.cer": wwdr.public_bytes(serialization.Encoding.DER),
        "pass.pem": pass_cert.public_bytes(serialization.Encoding.PEM),
        "pass.key": pem_key(pass_key),
        "pass-encrypted.key": pem_key(pass_key, KEY_PASSWORD),
        "stray.key": pem_key(stray_key),
        "google.key": pem_key(google_key),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    paths = {name: str(folder / name) for name in files}
    return {
        "paths": paths,
        "pass_cert": pass_cert,
        "wwdr": wwdr,
        "google_public_key": google_key.public_key(),
        "stray_public_key": stray_key.public_key(),
        "google_pem": files["google.key"].decode(),
    }


@pytest.fixture(autouse=True)
def _fresh_credentials():
    """Each test loads its own settings' credentials (the loaders cache per process)."""
    apple._load_signer.cache_clear()
    google._load_key.cache_clear()
    yield
    apple._load_signer.cache_clear()
    google._load_key.cache_clear()


@pytest.fixture
def apple_settings(settings, pki):
    settings.WALLET_APPLE_PASS_TYPE_ID = PASS_TYPE_ID
    settings.WALLET_APPLE_TEAM_ID = TEAM_ID
    settings.WALLET_APPLE_CERT = pki["paths"]["pass.pem"]
    settings.WALLET_APPLE_KEY = pki["paths"]["pass.key"]
    settings.WALLET_APPLE_KEY_PASSWORD = ""
    settings.WALLET_APPLE_WWDR_CERT = pki["paths"]["wwdr.cer"]
    settings.WALLET_APPLE_WEB_SERVICE_URL = ""
    settings.WALLET_APPLE_IMAGES_DIR = ""
    settings.PUBLIC_BASE_URL = "https://club.example.com"
    return settings


@pytest.fixture
def google_settings(settings, pki):
    settings.WALLET_GOOGLE_ISSUER_ID = "3388000000012345678"
    settings.WALLET_GOOGLE_SERVICE_ACCOUNT_EMAIL = "wallet@loyalty-test.iam.gserviceaccount.com"
    settings.WALLET_GOOGLE_PRIVATE_KEY = pki["google_pem"]  # the PEM text itself, as from the environment
    settings.WALLET_GOOGLE_LOGO_URL = ""
    settings.WALLET_GOOGLE_ID_PREFIX = "loyalty"
    settings.PUBLIC_BASE_URL = "https://club.example.com"
    return settings


@pytest.fixture
def program(db):
    """A yellow brand: dark text reads best on it."""
    return ProgramFactory(name="Café Club", slug="cafe-club", points_name="stars", brand_color="#FFD400")


@pytest.fixture
def gold_member(program):
    """Ada Lovelace with 1,250 available stars and the Gold tier."""
    member = MemberFactory(program=program, first_name="Ada", last_name="Lovelace")
    points_adjust(program=program, member_id=member.pk, points=1250, reason="opening balance", source="test")
    gold = TierFactory(program=program, name="Gold", position=2, threshold=Decimal("500"))
    tier_set_manual(
        member=member, tier=gold, until=timezone.now() + dt.timedelta(days=90), reason="test", notify_member=False
    )
    return member


@pytest.fixture
def card(gold_member):
    """An active card of the Gold member, as the portal would read it (a fresh row)."""
    return Card.objects.get(pk=CardFactory(member=gold_member).pk)


def _open(pkpass: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# --- Apple Wallet --------------------------------------------------------------------------------


def test_pkpass_holds_the_pass_its_images_manifest_and_signature(apple_settings, card):
    files = _open(wallet.pkpass_for_card(card))

    assert set(files) == {
        "pass.json",
        "manifest.json",
        "signature",
        "icon.png",
        "icon@2x.png",
        "icon@3x.png",
        "logo.png",
        "logo@2x.png",
        "logo@3x.png",
    }


def test_manifest_holds_the_sha1_of_every_other_file(apple_settings, card):
    files = _open(wallet.pkpass_for_card(card))
    manifest = json.loads(files["manifest.json"])

    assert set(manifest) == set(files) - {"manifest.json", "signature"}
    for name, digest in manifest.items():
        assert digest == hashlib.sha1(files[name]).hexdigest(), name  # noqa: S324


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_signature_verifies_over_the_manifest_up_to_the_root(apple_settings, card, pki, tmp_path):
    """openssl checks the detached signature over manifest.json and builds the chain to the
    root from the intermediate carried in the signature (only the root is trusted)."""
    files = _open(wallet.pkpass_for_card(card))
    (tmp_path / "signature").write_bytes(files["signature"])
    (tmp_path / "manifest.json").write_bytes(files["manifest.json"])
    (tmp_path / "forged.json").write_bytes(files["manifest.json"].replace(b'"pass.json"', b'"pass.jsoN"'))

    def verify(content: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["openssl", "smime", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "signature"),
             "-content", str(tmp_path / content), "-CAfile", pki["paths"]["root.pem"], "-purpose", "any",
             "-out", str(tmp_path / "out")],
            capture_output=True,
            check=False,
        )  # fmt: skip

    result = verify("manifest.json")
    assert result.returncode == 0, result.stderr.decode()
    assert b"Verification successful" in result.stderr
    assert verify("forged.json").returncode != 0


def test_signature_carries_the_pass_certificate_and_the_wwdr_certificate(apple_settings, card, pki):
    files = _open(wallet.pkpass_for_card(card))

    carried = pkcs7.load_der_pkcs7_certificates(files["signature"])

    assert set(carried) == {pki["pass_cert"], pki["wwdr"]}


def test_pass_json_shows_the_card_balance_tier_member_and_program(apple_settings, card):
    data = json.loads(_open(wallet.pkpass_for_card(card))["pass.json"])

    assert data["formatVersion"] == 1
    assert data["passTypeIdentifier"] == PASS_TYPE_ID
    assert data["teamIdentifier"] == TEAM_ID
    assert data["serialNumber"] == card.number
    assert data["organizationName"] == data["logoText"] == "Café Club"
    assert data["barcodes"] == [
        {
            "format": "PKBarcodeFormatCode128",
            "message": card.number,
            "messageEncoding": "iso-8859-1",
            "altText": card.number,
        }
    ]
    fields = data["storeCard"]
    assert fields["primaryFields"][0]["key"] == "balance"
    assert fields["primaryFields"][0]["value"] == 1250
    assert fields["primaryFields"][0]["label"] == "stars"
    assert [(f["key"], f["value"]) for f in fields["secondaryFields"]] == [("tier", "Gold")]
    assert [(f["key"], f["value"]) for f in fields["auxiliaryFields"]] == [("member", "Ada Lovelace")]
    back = {f["key"]: f["value"] for f in fields["backFields"]}
    assert back["number"] == card.number
    assert "https://club.example.com/p/cafe-club/" in back["portal"]
    # Yellow background, black text, labels a readable dark shade.
    assert data["backgroundColor"] == "rgb(255, 212, 0)"
    assert data["foregroundColor"] == "rgb(0, 0, 0)"
    assert data["labelColor"] == "rgb(76, 64, 0)"
    assert "webServiceURL" not in data
    assert "authenticationToken" not in data


def test_pass_json_leaves_out_the_tier_and_name_a_member_does_not_have(apple_settings, program):
    member = MemberFactory(program=program, first_name="", last_name="")
    card = CardFactory(member=member)

    fields = json.loads(_open(wallet.pkpass_for_card(card))["pass.json"])["storeCard"]

    assert fields["primaryFields"][0]["value"] == 0
    assert fields["secondaryFields"] == []
    assert fields["auxiliaryFields"] == []


def test_web_service_url_and_token_are_added_only_when_configured(apple_settings, card):
    apple_settings.WALLET_APPLE_WEB_SERVICE_URL = "https://club.example.com/wallet/apple"

    data = json.loads(_open(wallet.pkpass_for_card(card))["pass.json"])

    assert data["webServiceURL"] == "https://club.example.com/wallet/apple"
    assert data["authenticationToken"] == apple.apple_authentication_token(card.number)
    assert len(data["authenticationToken"]) >= 16


def test_barcode_format_can_be_qr(apple_settings, google_settings, card, pki):
    apple_settings.WALLET_BARCODE_FORMAT = "qr"

    data = json.loads(_open(wallet.pkpass_for_card(card))["pass.json"])
    token = wallet.google_save_url_for_card(card).rsplit("/", 1)[1]
    claims = jwt.decode(token, pki["google_public_key"], algorithms=["RS256"], audience="google")

    assert data["barcodes"][0]["format"] == "PKBarcodeFormatQR"
    assert claims["payload"]["loyaltyObjects"][0]["barcode"]["type"] == "QR_CODE"


def test_images_are_drawn_in_the_program_colour_at_apple_sizes(apple_settings, card):
    files = _open(wallet.pkpass_for_card(card))

    for name, (width, height) in branding.APPLE_IMAGES.items():
        image = Image.open(io.BytesIO(files[name]))
        assert image.format == "PNG"
        assert image.size == (width, height), name
    icon = Image.open(io.BytesIO(files["icon.png"])).convert("RGB")
    assert icon.getpixel((0, 0)) == (255, 212, 0)


def test_images_from_the_images_folder_replace_the_drawn_ones(apple_settings, card, tmp_path):
    own_icon = io.BytesIO()
    Image.new("RGB", (29, 29), (1, 2, 3)).save(own_icon, format="PNG")
    (tmp_path / "cafe-club").mkdir()
    (tmp_path / "cafe-club" / "icon.png").write_bytes(own_icon.getvalue())
    apple_settings.WALLET_APPLE_IMAGES_DIR = str(tmp_path)

    files = _open(wallet.pkpass_for_card(card))

    assert files["icon.png"] == own_icon.getvalue()
    assert "icon@2x.png" not in files  # the operator's icon family is used as given
    assert "logo.png" in files  # the logo is still drawn


def test_credentials_can_be_pem_text_with_an_encrypted_key(apple_settings, card, pki):
    paths = pki["paths"]
    apple_settings.WALLET_APPLE_CERT = open(paths["pass.pem"]).read()  # noqa: SIM115
    apple_settings.WALLET_APPLE_KEY = open(paths["pass-encrypted.key"]).read().replace("\n", "\\n")  # noqa: SIM115
    apple_settings.WALLET_APPLE_KEY_PASSWORD = KEY_PASSWORD

    assert wallet.apple_wallet_enabled()
    assert json.loads(_open(wallet.pkpass_for_card(card))["pass.json"])["serialNumber"] == card.number


def test_credentials_are_parsed_once_per_process(apple_settings, card):
    with mock.patch.object(apple, "load_private_key", wraps=credentials.load_private_key) as load:
        wallet.pkpass_for_card(card)
        wallet.pkpass_for_card(card)
        assert wallet.apple_wallet_enabled()

    assert load.call_count == 1


@pytest.mark.parametrize(
    "missing",
    [
        "WALLET_APPLE_PASS_TYPE_ID",
        "WALLET_APPLE_TEAM_ID",
        "WALLET_APPLE_CERT",
        "WALLET_APPLE_KEY",
        "WALLET_APPLE_WWDR_CERT",
    ],
)
def test_apple_wallet_is_off_without_each_setting(apple_settings, card, missing):
    setattr(apple_settings, missing, "")

    assert wallet.apple_wallet_enabled() is False
    with pytest.raises(wallet.WalletNotConfigured):
        wallet.pkpass_for_card(card)


def test_apple_wallet_is_off_by_default(settings):
    assert settings.WALLET_APPLE_CERT == ""
    assert wallet.apple_wallet_enabled() is False


def test_apple_wallet_is_off_when_the_key_is_not_the_certificates(apple_settings, pki, caplog):
    apple_settings.WALLET_APPLE_KEY = pki["paths"]["stray.key"]

    assert wallet.apple_wallet_enabled() is False
    assert "is not the key of WALLET_APPLE_CERT" in caplog.text


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("WALLET_APPLE_CERT", "/nonexistent/pass.pem"),
        ("WALLET_APPLE_WWDR_CERT", "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----"),
        ("WALLET_APPLE_KEY_PASSWORD", "wrong"),
    ],
)
def test_apple_wallet_is_off_when_a_credential_cannot_be_read(apple_settings, pki, caplog, setting, value):
    if setting == "WALLET_APPLE_KEY_PASSWORD":
        apple_settings.WALLET_APPLE_KEY = pki["paths"]["pass-encrypted.key"]
    setattr(apple_settings, setting, value)

    assert wallet.apple_wallet_enabled() is False
    assert "Apple Wallet is off" in caplog.text


def test_a_card_that_is_not_an_active_card_of_a_member_gets_no_pass(apple_settings, google_settings, program):
    stock = CardFactory(program=program)
    blocked = CardFactory(program=program, blocked=True, member=MemberFactory(program=program))

    for card in (stock, blocked):
        with pytest.raises(wallet.CardNotEligible):
            wallet.pkpass_for_card(card)
        with pytest.raises(wallet.CardNotEligible):
            wallet.google_save_url_for_card(card)


def test_a_blocked_member_gets_no_pass(apple_settings, card):
    card.member.status = card.member.Status.BLOCKED

    with pytest.raises(wallet.CardNotEligible):
        wallet.pkpass_for_card(card)


def test_building_a_pass_reads_at_most_three_rows(apple_settings, card, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):
        wallet.pkpass_for_card(card)


# --- colours -------------------------------------------------------------------------------------


def test_a_dark_brand_colour_gets_white_text():
    colours = pass_colours("#1F6FEB")

    assert colours.foreground == (255, 255, 255)
    assert contrast_ratio(colours.label, colours.background) >= 4.5


@given(st.from_regex(r"\A#[0-9A-F]{6}\Z"))
def test_text_and_labels_are_readable_on_any_brand_colour(colour):
    colours = pass_colours(colour)

    assert contrast_ratio(colours.foreground, colours.background) >= 4.5
    assert contrast_ratio(colours.label, colours.background) >= 4.5


# --- Google Wallet -------------------------------------------------------------------------------


def _claims(url: str, public_key) -> dict:
    assert url.startswith("https://pay.google.com/gp/v/save/")
    return jwt.decode(url.rsplit("/", 1)[1], public_key, algorithms=["RS256"], audience="google")


def test_save_link_is_a_jwt_signed_by_the_service_account(google_settings, card, pki):
    claims = _claims(
        wallet.google_save_url_for_card(card, origins=["https://shop.example.com/account"]),
        pki["google_public_key"],
    )

    assert claims["iss"] == "wallet@loyalty-test.iam.gserviceaccount.com"
    assert claims["aud"] == "google"
    assert claims["typ"] == "savetowallet"
    assert isinstance(claims["iat"], int)
    assert claims["origins"] == ["https://shop.example.com"]
    [loyalty_class] = claims["payload"]["loyaltyClasses"]
    [loyalty_object] = claims["payload"]["loyaltyObjects"]
    assert loyalty_class["id"] == "3388000000012345678.loyalty-program-cafe-club"
    assert loyalty_class["issuerName"] == loyalty_class["programName"] == "Café Club"
    assert loyalty_class["hexBackgroundColor"] == "#FFD400"
    assert loyalty_class["reviewStatus"] == "UNDER_REVIEW"
    assert loyalty_class["programLogo"]["sourceUri"]["uri"] == "https://club.example.com/p/cafe-club/wallet/logo.png"
    assert loyalty_object["id"] == f"3388000000012345678.loyalty-card-{card.number}"
    assert loyalty_object["classId"] == loyalty_class["id"]
    assert loyalty_object["state"] == "ACTIVE"
    assert loyalty_object["accountId"] == card.number
    assert loyalty_object["accountName"] == "Ada Lovelace"
    assert loyalty_object["loyaltyPoints"] == {"label": "stars", "balance": {"int": 1250}}
    assert loyalty_object["barcode"] == {"type": "CODE_128", "value": card.number, "alternateText": card.number}
    assert loyalty_object["textModulesData"] == [{"id": "tier", "header": "Tier", "body": "Gold"}]


def test_save_link_does_not_verify_with_another_key(google_settings, card, pki):
    with pytest.raises(jwt.InvalidSignatureError):
        _claims(wallet.google_save_url_for_card(card), pki["stray_public_key"])


def test_origins_default_to_the_public_address(google_settings, card, pki):
    claims = _claims(wallet.google_save_url_for_card(card), pki["google_public_key"])

    assert claims["origins"] == ["https://club.example.com"]


def test_an_origin_that_is_not_a_web_address_is_refused(google_settings, card):
    with pytest.raises(ValueError, match="not a web origin"):
        wallet.google_save_url_for_card(card, origins=["javascript:alert(1)"])


def test_the_programs_logo_or_the_installations_logo_is_used(google_settings, card, pki):
    google_settings.WALLET_GOOGLE_LOGO_URL = "https://cdn.example.com/logo.png"
    claims = _claims(wallet.google_save_url_for_card(card), pki["google_public_key"])
    assert claims["payload"]["loyaltyClasses"][0]["programLogo"]["sourceUri"]["uri"] == (
        "https://cdn.example.com/logo.png"
    )

    card.program.logo_url = "https://cafe.example.com/brand.png"
    claims = _claims(wallet.google_save_url_for_card(card), pki["google_public_key"])
    assert claims["payload"]["loyaltyClasses"][0]["programLogo"]["sourceUri"]["uri"] == (
        "https://cafe.example.com/brand.png"
    )


def test_the_generated_logo_is_a_square_png_of_660_pixels(program):
    image = Image.open(io.BytesIO(wallet.program_logo_png(program)))

    assert (image.format, image.size) == ("PNG", (660, 660))


@pytest.mark.parametrize(
    "missing", ["WALLET_GOOGLE_ISSUER_ID", "WALLET_GOOGLE_SERVICE_ACCOUNT_EMAIL", "WALLET_GOOGLE_PRIVATE_KEY"]
)
def test_google_wallet_is_off_without_each_setting(google_settings, card, missing):
    setattr(google_settings, missing, "")

    assert wallet.google_wallet_enabled() is False
    with pytest.raises(wallet.WalletNotConfigured):
        wallet.google_save_url_for_card(card)


def test_google_wallet_is_off_by_default(settings):
    assert settings.WALLET_GOOGLE_PRIVATE_KEY == ""
    assert wallet.google_wallet_enabled() is False


def test_google_wallet_is_off_when_the_key_cannot_be_read(google_settings, caplog):
    google_settings.WALLET_GOOGLE_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"

    assert wallet.google_wallet_enabled() is False
    assert "Google Wallet is off" in caplog.text
