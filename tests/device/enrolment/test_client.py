"""The gate's side of the enrolment exchange against a real HTTPS server (tests/support)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from device.enrolment.client import EnrolmentFailed, enrol
from gatescan.testing.broker import free_port
from protocol.enrolment import EnrolmentGrant, parse_enrolment_code
from server.site.certificates import (
    issue_server_certificate,
    new_authority,
    write_certificate,
    write_private_key,
)
from server.site.installation import Installation
from tests.support.enrolment_server import EnrolmentServer, site_enrolment_server, site_grant

TOKEN = "t" * 40


def grant_for(site: Installation) -> EnrolmentGrant:
    return site_grant(site, "gate-lobby-1", "p" * 24)


def test_a_good_card_is_exchanged_for_the_grant_once(site: Installation) -> None:
    grant = grant_for(site)
    with site_enrolment_server(site, {TOKEN: grant}) as server:
        code = parse_enrolment_code(server.code(TOKEN))
        assert enrol(code, agent_version="1.2.3", hardware="Raspberry Pi 5") == grant
        with pytest.raises(EnrolmentFailed) as again:
            enrol(code, agent_version="1.2.3")
    assert (again.value.reason, again.value.retry) == ("used", False)
    assert server.requests[0].agent_version == "1.2.3"
    assert server.requests[0].hardware == "Raspberry Pi 5"


@pytest.mark.parametrize(
    ("answer", "retry"),
    [("expired", False), ("revoked", False), ("unknown_token", False), ("busy", True)],
)
def test_a_refused_token_says_the_servers_reason(
    site: Installation, answer: str, retry: bool
) -> None:
    with (
        site_enrolment_server(site, {TOKEN: answer}) as server,
        pytest.raises(EnrolmentFailed) as refused,
    ):
        enrol(parse_enrolment_code(server.code(TOKEN)), agent_version="1")
    assert (refused.value.reason, refused.value.retry) == (answer, retry)
    assert TOKEN not in str(refused.value)


def test_a_server_showing_another_ca_is_foreign_and_gets_no_token(
    site: Installation, tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign-ca.crt"
    write_certificate(foreign, new_authority("impostor").certificate)
    server = site_enrolment_server(site, {TOKEN: grant_for(site)}, served_ca=foreign)
    with server, pytest.raises(EnrolmentFailed) as refused:
        enrol(parse_enrolment_code(server.code(TOKEN)), agent_version="1")
    assert (refused.value.reason, refused.value.retry) == ("foreign_server", False)
    assert server.requests == []  # the token never left the gate


def test_a_card_whose_fingerprint_is_not_the_servers_ca_is_refused(site: Installation) -> None:
    with site_enrolment_server(site, {TOKEN: grant_for(site)}) as server:
        code = parse_enrolment_code(server.code(TOKEN, ca_sha256="0" * 64))
        with pytest.raises(EnrolmentFailed) as refused:
            enrol(code, agent_version="1")
    assert refused.value.reason == "foreign_server"
    assert server.requests == []


def test_a_server_whose_certificate_does_not_name_its_host_is_refused(
    site: Installation, tmp_path: Path
) -> None:
    # Its own CA (whose fingerprint is on the card), but a certificate for another name.
    authority = new_authority("elsewhere")
    issued = issue_server_certificate(authority, ["enrol.elsewhere.invalid"])
    ca, cert, key = tmp_path / "ca.crt", tmp_path / "server.crt", tmp_path / "server.key"
    write_certificate(ca, authority.certificate)
    write_certificate(cert, issued.certificate)
    write_private_key(key, issued.key)
    tokens = {TOKEN: grant_for(site)}
    server = EnrolmentServer(certfile=cert, keyfile=key, ca_file=ca, tokens=tokens)
    with server, pytest.raises(EnrolmentFailed) as refused:
        enrol(parse_enrolment_code(server.code(TOKEN)), agent_version="1")
    assert refused.value.reason == "foreign_server"
    assert "certificate" in refused.value.message
    assert server.requests == []


def test_no_server_at_the_address_is_a_network_failure_tried_again() -> None:
    code = parse_enrolment_code(
        f"GATESCAN-ENROL/1?server=https%3A%2F%2F127.0.0.1%3A{free_port()}&token={TOKEN}"
        f"&ca={'a' * 64}"
    )
    with pytest.raises(EnrolmentFailed) as failed:
        enrol(code, agent_version="1")
    assert (failed.value.reason, failed.value.retry) == ("network", True)


def test_a_server_that_never_answers_is_given_up_within_the_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks TLS
    port = listener.getsockname()[1]
    code = parse_enrolment_code(
        f"GATESCAN-ENROL/1?server=https%3A%2F%2F127.0.0.1%3A{port}&token={TOKEN}&ca={'a' * 64}"
    )
    try:
        with pytest.raises(EnrolmentFailed) as failed:
            enrol(code, agent_version="1", socket_timeout=0.5, deadline_s=1.0)
    finally:
        listener.close()
    assert (failed.value.reason, failed.value.retry) == ("network", True)


def test_the_ca_download_is_checked_before_anything_is_trusted(site: Installation) -> None:
    pem = site.files.ca_file.read_text(encoding="ascii")
    assert ssl.PEM_cert_to_DER_cert(pem.strip())  # the site's CA is what the server serves


def test_a_grant_whose_ca_cannot_be_used_is_a_bad_answer(site: Installation) -> None:
    hostile = grant_for(site).model_copy(
        update={"ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}
    )
    server = site_enrolment_server(site, {TOKEN: hostile})
    with server, pytest.raises(EnrolmentFailed) as refused:
        enrol(parse_enrolment_code(server.code(TOKEN)), agent_version="1")
    assert (refused.value.reason, refused.value.retry) == ("bad_answer", False)
