"""A small client of the enrolment contract (protocol/enrolment.py), as a gate speaks it: fetch
the CA unverified, pin it by the code's fingerprint, then exchange the token over TLS verified
against that CA alone, host name checked. The gate's own client lives in device/; this one is
for the server's tests."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocol.enrolment import (
    CA_PATH,
    EXCHANGE_PATH,
    EnrolmentCode,
    EnrolmentGrant,
    EnrolmentRefusal,
    ca_fingerprint,
)

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def grant(self) -> EnrolmentGrant:
        return EnrolmentGrant.model_validate(self.body)

    @property
    def refusal(self) -> EnrolmentRefusal:
        return EnrolmentRefusal.model_validate(self.body)


def _connection(server: str, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    parts = urlsplit(server)
    assert parts.hostname is not None
    return http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, context=context, timeout=TIMEOUT_S
    )


def fetch_pinned_ca(code: EnrolmentCode) -> str:
    """Step 1: the CA's PEM, from a connection not yet verified; AssertionError unless its DER's
    SHA-256 is the code's."""
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    connection = _connection(code.server, unverified)
    try:
        connection.request("GET", CA_PATH)
        response = connection.getresponse()
        pem = response.read().decode("ascii")
    finally:
        connection.close()
    assert response.status == 200, response.status
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    assert ca_fingerprint(der) == code.ca_sha256, "the server's CA is not the card's"
    return pem


def post_exchange(server: str, ca_pem: str, body: bytes) -> Answer:
    """Step 2: POST the body, over TLS verified against the pinned CA, host name checked."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    connection = _connection(server, context)
    try:
        connection.request(
            "POST", EXCHANGE_PATH, body=body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        raw = response.read()
        headers = {key.lower(): value for key, value in response.getheaders()}
    finally:
        connection.close()
    return Answer(response.status, json.loads(raw), headers)


def enrol(code: EnrolmentCode, agent_version: str = "test", hardware: str = "") -> Answer:
    """The whole exchange for a card's code."""
    ca_pem = fetch_pinned_ca(code)
    body = {"handshake": 1, "token": code.token, "agent_version": agent_version,
            "hardware": hardware}  # fmt: skip
    return post_exchange(code.server, ca_pem, json.dumps(body).encode())
