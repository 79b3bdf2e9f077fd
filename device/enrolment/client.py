"""The gate's side of the enrolment exchange (protocol/enrolment.py), over HTTPS with the
standard library.

    enrol(code, agent_version=..., hardware=...) -> EnrolmentGrant    or EnrolmentFailed

1. `GET {server}/enrol/v1/ca.crt` without checking the certificate (the gate trusts no CA yet);
   the SHA-256 of the answer's DER bytes must equal the code's `ca`, else the server is foreign.
2. `POST {server}/enrol/v1/exchange` with TLS checked against that CA alone, the host name
   checked, TLS 1.2 at least: the `EnrolmentRequest`; a 200 answer is the grant, a 4xx one an
   `EnrolmentRefusal`.

Every connection has a timeout per socket operation and every answer a deadline and a size
limit: a server that trickles or floods bytes gets a refusal, never a gate that hangs or fills
its memory. `EnrolmentFailed.reason` is the server's refusal reason, or one of the gate's own
(`foreign_server`, `network`, `server_error`, `bad_answer`); `retry` says whether trying the same
code again later may help (busy, network, server_error) or another card is needed. The token is
never part of a message here.
"""

from __future__ import annotations

import http.client
import ssl
import time
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from pydantic import ValidationError

from protocol.enrolment import (
    CA_PATH,
    EXCHANGE_PATH,
    EnrolmentCode,
    EnrolmentGrant,
    EnrolmentRefusal,
    EnrolmentRequest,
    ca_fingerprint,
)
from protocol.text import printable

MAX_CA_BYTES: Final = 20_000  # a CA certificate in PEM is 1-3 kB
MAX_ANSWER_BYTES: Final = 64_000  # a grant is under 25 kB (its ca_pem at most 20 kB)
SOCKET_TIMEOUT_S: Final = 10.0
ANSWER_DEADLINE_S: Final = 20.0
RETRYABLE: Final = frozenset({"busy", "network", "server_error"})


class EnrolmentFailed(Exception):
    """The exchange did not give a grant; `reason` is a word for logs and the light."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")

    @property
    def retry(self) -> bool:
        return self.reason in RETRYABLE


@dataclass(frozen=True)
class _Server:
    host: str
    port: int
    prefix: str

    @classmethod
    def of(cls, code: EnrolmentCode) -> _Server:
        parts = urlsplit(code.server)
        try:
            port = parts.port or 443
        except ValueError:
            raise EnrolmentFailed("bad_answer", "the code's server port is not a number") from None
        return cls(parts.hostname or "", port, parts.path.rstrip("/"))


def enrol(
    code: EnrolmentCode,
    *,
    agent_version: str,
    hardware: str = "",
    socket_timeout: float = SOCKET_TIMEOUT_S,
    deadline_s: float = ANSWER_DEADLINE_S,
) -> EnrolmentGrant:
    """Exchange `code` for this gate's identity; EnrolmentFailed says why not."""
    server = _Server.of(code)
    ca_der = fetch_ca(code, socket_timeout, deadline_s)
    request = EnrolmentRequest(token=code.token, agent_version=agent_version, hardware=hardware)
    verified = _verified_context(ca_der)
    status, body = _exchange(
        server,
        verified,
        "POST",
        server.prefix + EXCHANGE_PATH,
        request.model_dump_json().encode("utf-8"),
        MAX_ANSWER_BYTES,
        socket_timeout,
        deadline_s,
    )
    return _grant_or_refusal(status, body)


def fetch_ca(
    code: EnrolmentCode,
    socket_timeout: float = SOCKET_TIMEOUT_S,
    deadline_s: float = ANSWER_DEADLINE_S,
) -> bytes:
    """The code's server's CA (DER), if its fingerprint is the code's; else EnrolmentFailed."""
    server = _Server.of(code)
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # nothing to check against yet: the fingerprint is
    unverified.minimum_version = ssl.TLSVersion.TLSv1_2
    status, body = _exchange(
        server,
        unverified,
        "GET",
        server.prefix + CA_PATH,
        None,
        MAX_CA_BYTES,
        socket_timeout,
        deadline_s,
    )
    if status != 200:
        raise _status_failure(status, "the CA certificate")
    try:
        der = ssl.PEM_cert_to_DER_cert(body.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise EnrolmentFailed("bad_answer", "the server's CA is not a PEM certificate") from None
    if ca_fingerprint(der) != code.ca_sha256:
        raise EnrolmentFailed(
            "foreign_server",
            "the server's CA is not the one on the card (its fingerprint differs): a server "
            "of another installation, or an impostor",
        )
    return der


def _verified_context(ca_der: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, host name checked
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cadata=ca_der)
    except ssl.SSLError as error:
        raise EnrolmentFailed("bad_answer", f"the server's CA cannot be used ({error})") from None
    return context


def _exchange(
    server: _Server,
    context: ssl.SSLContext,
    method: str,
    path: str,
    body: bytes | None,
    limit: int,
    socket_timeout: float,
    deadline_s: float,
) -> tuple[int, bytes]:
    """One request: (status, body of at most `limit` bytes) or EnrolmentFailed."""
    deadline = time.monotonic() + deadline_s
    connection = http.client.HTTPSConnection(
        server.host, server.port, context=context, timeout=socket_timeout
    )
    headers = {"Accept": "application/json, application/x-pem-file", "Connection": "close"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise EnrolmentFailed("bad_answer", f"the answer is over {limit} bytes")
        data = bytearray()
        while len(data) <= limit:
            if time.monotonic() > deadline:
                raise EnrolmentFailed("network", f"no whole answer within {deadline_s:.0f} s")
            chunk = response.read1(min(16_384, limit + 1 - len(data)))
            if not chunk:
                break
            data += chunk
        if len(data) > limit:
            raise EnrolmentFailed("bad_answer", f"the answer is over {limit} bytes")
        return response.status, bytes(data)
    except ssl.SSLCertVerificationError as error:
        raise EnrolmentFailed(
            "foreign_server", f"the server's certificate was refused ({error.verify_message})"
        ) from None
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise EnrolmentFailed("network", f"{server.host}:{server.port}: {reason}") from None
    finally:
        connection.close()


def _grant_or_refusal(status: int, body: bytes) -> EnrolmentGrant:
    if status == 200:
        try:
            grant = EnrolmentGrant.model_validate_json(body)
        except ValidationError as error:
            raise EnrolmentFailed(
                "bad_answer", f"the grant is not valid ({error.error_count()} problems)"
            ) from None
        try:  # kept only if the agent can use it: a CA it cannot load would stop every start
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=grant.ca_pem)
        except (ssl.SSLError, ValueError):
            raise EnrolmentFailed("bad_answer", "the grant's CA is not a PEM certificate") from None
        return grant
    if status >= 400:  # a refusal's body names its reason, whatever the status (busy: 503)
        try:
            refusal = EnrolmentRefusal.model_validate_json(body)
        except ValidationError:
            raise _status_failure(status, "the exchange") from None
        raise EnrolmentFailed(refusal.reason, printable(refusal.message, 300))
    raise _status_failure(status, "the exchange")


def _status_failure(status: int, what: str) -> EnrolmentFailed:
    if status >= 500:
        return EnrolmentFailed("server_error", f"{what}: HTTP {status}")
    return EnrolmentFailed("bad_answer", f"{what}: unexpected HTTP {status}")
