"""Reading the wallet certificates and keys from settings, once per process.

A setting holds either the PEM text itself (an environment variable; literal "\\n" sequences are
accepted for one-line .env files) or the path of a file (PEM, or DER for certificates, as
Apple's WWDR download is). Parsing a key costs far more than signing with it, so the loaders are
cached on the setting values: a process parses each credential once, and a test that overrides
the settings gets its own entry.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def secret_bytes(value: str) -> bytes:
    """The PEM text of `value`, or the bytes of the file it names."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n").encode()
    return Path(value).expanduser().read_bytes()


def load_certificate(value: str) -> x509.Certificate:
    data = secret_bytes(value)
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_private_key(value: str, password: str = "") -> PrivateKeyTypes:
    data = secret_bytes(value)
    secret = password.encode() if password else None
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, password=secret)
    return serialization.load_der_private_key(data, password=secret)
