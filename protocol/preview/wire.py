"""The preview on the wire (docs/protocol.md, "Preview"): what the server asks a gate for, and
the annotated frames the gate sends back while a session it asked for is alive.

    gatescan/v1/devices/{id}/preview_request   server -> gate, QoS 1, not retained: `PreviewRequest`
    gatescan/v1/devices/{id}/preview           gate -> server, QoS 0, not retained: a frame

A frame is binary: MAGIC, a big-endian u16 length, that many bytes of JSON (`FrameHeader`), then
the JPEG. The whole payload is at most MAX_FRAME_BYTES, well inside the broker's 64 KiB packet
(its topic and fixed header fit in the rest). Frames carry no code's content: only the number of
codes read and where they were in the picture.

Kept out of protocol/topics.py's `Topic`: the collector's event, status and telemetry paths never
see a preview; only the preview's relay parses these.
"""

from __future__ import annotations

import json
import struct
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from protocol.messages import COMMAND_MAX_AGE_S, Label
from protocol.topics import PREFIX, is_valid_device_id

PREVIEW = "preview"
PREVIEW_REQUEST = "preview_request"
PREVIEW_SUBSCRIPTION = f"{PREFIX}/+/{PREVIEW}"  # every gate's frames: the collector's
PREVIEW_REQUEST_WRITE = f"{PREFIX}/+/{PREVIEW_REQUEST}"  # every gate's requests: the collector's
MAGIC = b"GSP1"
MAX_FRAME_BYTES = 60 * 1024
MAX_HEADER_BYTES = 1024
# A request is carried out within this many seconds of its issued_at by the gate's clock, either
# way, as a command is (docs/protocol.md, "Commands"): one the broker held is never obeyed.
REQUEST_MAX_AGE_S = COMMAND_MAX_AGE_S
DEFAULT_TTL_S = 60
MAX_TTL_S = 120
DEFAULT_FPS = 2.0
MAX_FPS = 4.0
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
SessionId = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]


class PreviewError(ValueError):
    """A preview message that breaks this contract."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


class PreviewRequest(_Wire):
    """Start (or renew) a session for `ttl_s` seconds from now, or stop it. The gate sends
    frames only while a session lives; a lapsed one ends by itself."""

    session_id: SessionId
    action: Literal["start", "stop"]
    issued_at: AwareDatetime
    ttl_s: Annotated[int, Field(ge=1, le=MAX_TTL_S)] = DEFAULT_TTL_S
    fps: Annotated[float, Field(gt=0, le=MAX_FPS)] = DEFAULT_FPS
    by: Label = ""


class FrameHeader(_Wire):
    """What travels before a frame's JPEG."""

    session_id: SessionId
    seq: Annotated[int, Field(ge=0, lt=2**63)]
    ts: AwareDatetime
    focus: Annotated[float, Field(ge=0)]  # variance of the Laplacian over the region of interest
    peak: Annotated[float, Field(ge=0)]  # the highest focus of this session so far
    width: Annotated[int, Field(ge=1, le=8192)]  # of the JPEG
    height: Annotated[int, Field(ge=1, le=8192)]
    roi: tuple[int, int, int, int]  # x, y, width, height in the JPEG's pixels
    codes: Annotated[int, Field(ge=0, le=64)]  # codes read in this frame (never their content)
    quality: Annotated[int, Field(ge=1, le=100)]


def preview_topic(device_id: str) -> str:
    return _topic(device_id, PREVIEW)


def preview_request_topic(device_id: str) -> str:
    return _topic(device_id, PREVIEW_REQUEST)


def _topic(device_id: str, kind: str) -> str:
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    return f"{PREFIX}/{device_id}/{kind}"


def preview_device(topic: str) -> str | None:
    """The device id of a frame's topic; None for any other topic."""
    head, _, kind = topic.rpartition("/")
    prefix, _, device_id = head.rpartition("/")
    if kind != PREVIEW or prefix != PREFIX or not is_valid_device_id(device_id):
        return None
    return device_id


def pack_frame(header: FrameHeader, jpeg: bytes) -> bytes:
    head = header.to_json()
    payload = MAGIC + struct.pack(">H", len(head)) + head + jpeg
    if len(payload) > MAX_FRAME_BYTES:
        raise PreviewError(f"a frame of {len(payload)} bytes > {MAX_FRAME_BYTES}")
    return payload


def unpack_frame(payload: bytes) -> tuple[FrameHeader, bytes]:
    """The header and the JPEG of a frame; PreviewError for anything else."""
    if len(payload) > MAX_FRAME_BYTES:
        raise PreviewError(f"{len(payload)} bytes > {MAX_FRAME_BYTES}")
    if payload[:4] != MAGIC or len(payload) < 6:
        raise PreviewError("not a preview frame")
    (length,) = struct.unpack(">H", payload[4:6])
    if length > MAX_HEADER_BYTES or len(payload) < 6 + length:
        raise PreviewError("a header too long or cut short")
    try:
        header = FrameHeader.model_validate(json.loads(payload[6 : 6 + length]))
    except (ValueError, ValidationError, RecursionError) as exc:
        raise PreviewError(f"a bad header: {str(exc)[:200]}") from None
    jpeg = payload[6 + length :]
    if not (jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")):
        raise PreviewError("not a JPEG")
    return header, jpeg


def parse_request(payload: bytes) -> PreviewRequest:
    if len(payload) > 4096:
        raise PreviewError("a request over 4 KiB")
    try:
        return PreviewRequest.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise PreviewError(f"{where}: {first['msg']}"[:300]) from None


def request_age_s(request: PreviewRequest, now: datetime) -> float:
    return (now - request.issued_at).total_seconds()
