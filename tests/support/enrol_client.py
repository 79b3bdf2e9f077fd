"""A small client of the enrolment contract (protocol/enrolment.py), as a gate speaks it: fetch
the CA unverified, pin it by the code's fingerprint, then exchange the token over TLS verified
against that CA alone, host name checked. The first step is the gate's own (device/enrolment/);
the second stays here, raw, for the server's tests: it sends any body (hostile ones too) and
gives back the status and headers, which the gate's client turns into a grant or a refusal."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from device.enrolment.client import fetch_ca
from protocol.enrolment import (
    EXCHANGE_PATH,
    EnrolmentCode,
    EnrolmentGrant,
    EnrolmentRefusal,
    EnrolmentRequest,
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
    """Step 1, as the gate takes it (device/enrolment/client.py's `fetch_ca`): the CA's PEM,
    fetched unverified and pinned by the code's fingerprint; EnrolmentFailed unless it is the
    code's."""
    return ssl.DER_cert_to_PEM_cert(fetch_ca(code, TIMEOUT_S, TIMEOUT_S))


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
    request = EnrolmentRequest(token=code.token, agent_version=agent_version, hardware=hardware)
    return post_exchange(code.server, ca_pem, request.model_dump_json().encode("utf-8"))
