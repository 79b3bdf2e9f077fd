"""An installation's own certificate authority, and the broker's certificate signed by it.

    ca = new_authority("gatescan site broker.lan")          -> Authority (key + self-signed cert)
    broker = issue_server_certificate(ca, ["broker.lan", "localhost", "127.0.0.1", "::1"])
    write_private_key(path, broker.key); write_certificate(path, broker.certificate)

Gates and the collector trust this CA alone (their `ca_file`), not the system's store: a broker
certificate bought from a public CA would have to name a public domain, which a site's LAN broker
seldom has, and a public CA would vouch for anyone's broker of that name.

Keys are ECDSA P-256: small, quick to make and to handshake with (a Raspberry Pi verifies a P-256
signature far faster than it does RSA-3072 work of the same strength), and every TLS 1.2 stack
speaks it. The CA can sign only certificates (path length 0, no intermediate); the broker's is a
TLS server certificate for the names and addresses given, checked by the clients' hostname check.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_YEARS = 10
# No renewal tool yet: a certificate that expires stops every gate at once, so the broker's
# lasts as long as a Pi's SD card is expected to (replace it with `gatescan site init --force`,
# which also makes a new CA that every gate must then be given).
SERVER_YEARS = 5
_BACKDATE = timedelta(hours=1)  # a gate whose clock is a little behind still accepts it
_PRIVATE = 0o600


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


Authority = Issued  # the CA: its key signs, its certificate is what clients trust


def new_authority(common_name: str, now: datetime | None = None) -> Authority:
    """A self-signed CA that may sign end certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = (now or datetime.now(UTC)) - _BACKDATE
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, certificate)


def issue_server_certificate(
    authority: Authority, names: list[str], now: datetime | None = None
) -> Issued:
    """A TLS server certificate for these DNS names and IP addresses (the first is its CN)."""
    if not names:
        raise ValueError("a server certificate needs at least one name")
    return _issue(authority, names, ExtendedKeyUsageOID.SERVER_AUTH, now)


def issue_client_certificate(
    authority: Authority, user: str, now: datetime | None = None
) -> Issued:
    """A TLS client certificate naming a broker user (its CN), for brokers that ask for one."""
    return _issue(authority, [user], ExtendedKeyUsageOID.CLIENT_AUTH, now, alt_names=False)


def _issue(
    authority: Authority,
    names: list[str],
    purpose: x509.ObjectIdentifier,
    now: datetime | None,
    *,
    alt_names: bool = True,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.now(UTC)) - _BACKDATE
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365 * SERVER_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False
        )
    return Issued(key, builder.sign(authority.key, hashes.SHA256()))


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def write_certificate(path: Path, certificate: x509.Certificate) -> None:
    """PEM, readable by all (a certificate is public)."""
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PEM (PKCS#8, unencrypted: services start unattended), created 0600: never readable by
    others, not even for a moment."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(path, data)


def write_private_file(path: Path, data: bytes) -> None:
    """Create (or replace) a file only its owner may read or write: 0600 from the first byte."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
