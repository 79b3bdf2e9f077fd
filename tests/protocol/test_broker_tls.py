"""client_tls_context: the broker checked against one CA (or the system's store), its name
checked, TLS 1.2 at least; a file that cannot be used is a BrokerTlsError naming it."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from protocol.broker_tls import BrokerTls, BrokerTlsError, client_tls_context, connect_failure
from server.site.certificates import (
    issue_client_certificate,
    new_authority,
    write_certificate,
    write_private_key,
)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    authority = new_authority("test CA")
    write_certificate(tmp_path / "ca.crt", authority.certificate)
    client = issue_client_certificate(authority, "gate-a")
    write_certificate(tmp_path / "gate.crt", client.certificate)
    write_private_key(tmp_path / "gate.key", client.key)
    other = issue_client_certificate(authority, "gate-b")
    write_private_key(tmp_path / "other.key", other.key)
    return tmp_path


def test_with_a_ca_file_only_that_ca_is_trusted(files: Path) -> None:
    context = client_tls_context(BrokerTls(ca_file=files / "ca.crt"))

    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_without_a_ca_file_the_system_store_is_used_with_the_same_checks() -> None:
    context = client_tls_context(BrokerTls())

    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_client_certificate_and_its_key_are_loaded(files: Path) -> None:
    tls = BrokerTls(files / "ca.crt", files / "gate.crt", files / "gate.key")

    assert client_tls_context(tls).minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (lambda d: BrokerTls(ca_file=d / "none.crt"), "CA file {d}/none.crt does not exist"),
        (lambda d: BrokerTls(ca_file=d), "CA file {d} is a folder"),
        (lambda d: BrokerTls(ca_file=d / "gate.key"), "CA file: {d}/gate.key holds no PEM"),
        (
            lambda d: BrokerTls(d / "ca.crt", d / "gate.crt", d / "other.key"),
            "client certificate: {d}/gate.crt and its key {d}/other.key cannot be used",
        ),
        (lambda d: BrokerTls(d / "ca.crt", None, d / "gate.key"), "needs its certificate"),
    ],
    ids=["missing", "folder", "not-a-certificate", "key-of-another-certificate", "key-alone"],
)
def test_a_file_that_cannot_be_used_is_named(files: Path, tls: object, message: str) -> None:
    with pytest.raises(BrokerTlsError) as caught:
        client_tls_context(tls(files))  # type: ignore[operator]

    assert message.format(d=files) in str(caught.value)


def test_a_refused_connection_is_told_apart_from_a_failed_handshake() -> None:

    refused = ConnectionRefusedError(111, "Connection refused")

    assert connect_failure(refused) == "unreachable (Connection refused)"
    assert "is the broker's port TLS?" in connect_failure(ssl.SSLError(1, "wrong version number"))
    assert connect_failure(None) == "unreachable"
