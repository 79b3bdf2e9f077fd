"""Enrolment: how a gate in setup mode becomes a gate of a site without a keyboard.

The contract between `gatescan gate add` (server side) and a gate in setup mode:

**The enrolment code** is the text of the QR that `gate add` writes (and prints):

    GATESCAN-ENROL/1?server=https%3A%2F%2Fbroker.lan%3A8443&token=TOKEN&ca=HEX64

- `GATESCAN-ENROL/1`: the handshake version. A gate refuses a version it does not know and says
  so, rather than guessing.
- `server`: the enrolment service's base URL, `https://` only.
- `token`: single use; it expires (the server decides when, `gate add` prints it). It is a
  secret until used: a gate never journals, logs or publishes it.
- `ca`: the SHA-256 of the installation CA certificate's DER bytes, 64 lowercase hex digits.

The same text may also reach a gate as a file, ENROLMENT_FILE_NAME beside its config (what
`gatescan provision` writes to the boot partition), for a gate set up with its card in hand.

**The exchange**, gate to server:

1. `GET {server}/enrol/v1/ca.crt`, TLS not yet verified: the CA certificate (PEM). The gate
   computes the SHA-256 of its DER bytes and goes on only if it equals the code's `ca`; else the
   server is foreign (or an impostor) and the gate refuses it.
2. `POST {server}/enrol/v1/exchange`, TLS verified against that CA with the host name checked:
   an `EnrolmentRequest` as JSON. The answer is 200 with an `EnrolmentGrant`, or 4xx with an
   `EnrolmentRefusal` (`reason` one of REFUSAL_REASONS). A grant is given once per token: the
   token is spent in the same transaction that creates the gate's broker client.

A gate stores the grant in its data directory (0600) and from then on runs as that identity:
it is no longer in setup mode.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Final, Literal, get_args
from urllib.parse import parse_qs, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from protocol.topics import DEVICE_ID_PATTERN
from protocol.verdicts import Direction

HANDSHAKE_VERSION: Final = 1
CODE_PREFIX = "GATESCAN-ENROL/"
ENROLMENT_FILE_NAME = "enrolment.txt"
CA_PATH = "/enrol/v1/ca.crt"
EXCHANGE_PATH = "/enrol/v1/exchange"

# Why a grant is refused; a gate shows each on its light and says it in its log.
RefusalReason = Literal[
    "unknown_token",  # never issued here: a card of another installation, or mistyped
    "used",  # spent by an earlier enrolment
    "expired",
    "revoked",  # the gate was revoked or retired before it enrolled
    "unsupported_handshake",
    "busy",  # the server could not reach the broker to create the client; try again
]
REFUSAL_REASONS: tuple[str, ...] = get_args(RefusalReason)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,128}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")

Token = Annotated[str, StringConstraints(pattern=_TOKEN.pattern)]
DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
ShortText = Annotated[str, StringConstraints(max_length=200)]


class EnrolmentCodeError(ValueError):
    """Text that looks like an enrolment code but is not a usable one; the message says why."""


class EnrolmentCode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    server: str
    token: Token
    ca_sha256: str

    def text(self) -> str:
        query = urlencode({"server": self.server, "token": self.token, "ca": self.ca_sha256})
        return f"{CODE_PREFIX}{self.version}?{query}"


def is_enrolment_code(text: str) -> bool:
    """Whether scanned text is meant as an enrolment code (well formed or not): such text is
    never an entry credential, and its token must not be recorded anywhere."""
    return text.lstrip().upper().startswith(CODE_PREFIX)


def parse_enrolment_code(text: str) -> EnrolmentCode:
    """The code in `text`, or EnrolmentCodeError naming what is wrong. A version other than
    HANDSHAKE_VERSION is refused here (the message names both versions)."""
    stripped = text.strip()
    if not is_enrolment_code(stripped):
        raise EnrolmentCodeError("not an enrolment code")
    head, _, query = stripped[len(CODE_PREFIX) :].partition("?")
    if not head.isdigit():
        raise EnrolmentCodeError(f"no handshake version after {CODE_PREFIX!r}")
    version = int(head)
    if version != HANDSHAKE_VERSION:
        raise EnrolmentCodeError(
            f"handshake version {version}; this gate speaks version {HANDSHAKE_VERSION}"
        )
    fields = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    missing = [key for key in ("server", "token", "ca") if not fields.get(key)]
    if missing:
        raise EnrolmentCodeError(f"missing {', '.join(missing)}")
    server = fields["server"]
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise EnrolmentCodeError(f"server {server!r} is not an https:// URL")
    if not _TOKEN.fullmatch(fields["token"]):
        raise EnrolmentCodeError("the token is not 32-128 URL-safe characters")
    fingerprint = fields["ca"].lower()
    if not _FINGERPRINT.fullmatch(fingerprint):
        raise EnrolmentCodeError("ca is not a SHA-256 fingerprint (64 hex digits)")
    return EnrolmentCode(
        version=version, server=server.rstrip("/"), token=fields["token"], ca_sha256=fingerprint
    )


def ca_fingerprint(der: bytes) -> str:
    """The `ca` of an enrolment code: SHA-256 of a certificate's DER bytes, lowercase hex."""
    return hashlib.sha256(der).hexdigest()


class EnrolmentRequest(BaseModel):
    """What a gate sends to exchange its token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    handshake: Literal[1] = HANDSHAKE_VERSION
    token: Token
    agent_version: ShortText
    hardware: ShortText = ""  # e.g. the Pi's model line from /proc/device-tree/model


class EnrolmentGrant(BaseModel):
    """The gate's identity, given once per token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    handshake: Literal[1] = HANDSHAKE_VERSION
    device_id: DeviceId
    site_id: ShortText
    location: ShortText = ""
    direction: Direction
    broker_url: Annotated[str, StringConstraints(pattern=r"^mqtts://", max_length=300)]
    username: DeviceId
    password: Annotated[str, StringConstraints(min_length=16, max_length=200)]
    ca_pem: Annotated[str, StringConstraints(max_length=20_000)]


class EnrolmentRefusal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: RefusalReason
    message: Annotated[str, Field(max_length=500)] = ""
