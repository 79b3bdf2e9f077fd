"""Enrolment tokens and the code a gate's card carries.

    token = new_token()                 -> 43 URL-safe characters: 256 random bits
    token_digest(token)                 -> what the registry keeps (SHA-256, hex)
    enrolment_code(url, token, ca_pem)  -> the EnrolmentCode for the card's QR

A token is a secret until it is spent: printed once by `gatescan gate add`, drawn in its QR,
never stored (only its digest), never logged. 256 bits: guessing is hopeless even without the
exchange's limit per address.
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocol.enrolment import HANDSHAKE_VERSION, EnrolmentCode, ca_fingerprint

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ca_der(ca_pem: bytes) -> bytes:
    """The DER bytes of a PEM certificate (ValueError if it is not one)."""
    certificate = x509.load_pem_x509_certificate(ca_pem)
    return certificate.public_bytes(serialization.Encoding.DER)


def enrolment_code(server_url: str, token: str, ca_pem: bytes) -> EnrolmentCode:
    return EnrolmentCode(
        version=HANDSHAKE_VERSION,
        server=server_url.rstrip("/"),
        token=token,
        ca_sha256=ca_fingerprint(ca_der(ca_pem)),
    )
