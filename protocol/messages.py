"""JSON messages of protocol v1. Readers ignore unknown fields; writers send every field."""

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from protocol.topics import DEVICE_ID_PATTERN, Topic
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus

# A single message above this is refused unread (a QR code holds at most 2,953 bytes).
MAX_MESSAGE_BYTES = 64 * 1024

DeviceId = Annotated[str, StringConstraints(pattern=DEVICE_ID_PATTERN)]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
ShortText = Annotated[str, StringConstraints(max_length=200)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=False)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class Event(_Message):
    """One showing of a code at a gate: what was read, when, and the verdict."""

    event_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{8,80}$")]
    device_id: DeviceId
    site_id: ShortText = ""
    seq: Annotated[int, Field(ge=0, lt=2**63)]
    boot_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")]
    ts: AwareDatetime  # RFC 3339, UTC, from the device clock (see clock_synced)
    clock_synced: bool
    direction: Direction
    status: VerdictStatus
    reason: Reason
    credential_type: CredentialType
    subject_id: ShortText  # CCCD number, or the code's sha256 for raw codes
    subject_name: ShortText = ""
    code_sha256: Hex64
    code_length: Annotated[int, Field(ge=0, le=8192)] = 0
    code_text: Annotated[str, StringConstraints(max_length=8192)] | None = None


class Ack(_Message):
    """Collector -> device: these events are committed to the database."""

    event_ids: Annotated[list[str], Field(max_length=10_000)]


class Status(_Message):
    """Retained on .../status. `offline` is also the device's MQTT last will."""

    state: Literal["online", "offline"]
    ts: AwareDatetime | None = None
    version: str = ""
    boot_id: str = ""
    faults: list[str] = Field(default_factory=list)


class Telemetry(_Message):
    ts: AwareDatetime
    uptime_s: float
    fps: float
    decode_ms: float  # median decode time over the last interval
    outbox_depth: int
    clock_synced: bool
    version: str
    faults: list[str] = Field(default_factory=list)


_MODELS: dict[Topic, type[_Message]] = {
    Topic.EVENTS: Event,
    Topic.ACK: Ack,
    Topic.STATUS: Status,
    Topic.TELEMETRY: Telemetry,
}


class MessageError(ValueError):
    """A payload that is not a valid message for its topic; `reason` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_message(kind: Topic, payload: bytes) -> Any:
    """Parse and validate a payload for a topic kind, or raise MessageError."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageError("too_large", f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError("not_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise MessageError("not_object", f"expected a JSON object, got {type(data).__name__}")
    try:
        return _MODELS[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise MessageError("schema", f"{where}: {first['msg']}"[:300]) from None
