"""The preview's wire: a frame packed and read back, the 60 KiB bound, what is not a frame, the
topics, and a request's fields."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol.preview.wire import (
    MAX_FRAME_BYTES,
    FrameHeader,
    PreviewError,
    pack_frame,
    parse_request,
    preview_device,
    preview_request_topic,
    preview_topic,
    unpack_frame,
)

JPEG = b"\xff\xd8" + b"\x00" * 1000 + b"\xff\xd9"


def header(**fields: object) -> FrameHeader:
    values: dict[str, object] = {
        "session_id": "session-01",
        "seq": 3,
        "ts": datetime(2026, 12, 6, tzinfo=UTC),
        "focus": 123.4,
        "peak": 130.2,
        "width": 640,
        "height": 360,
        "roi": (10, 20, 300, 200),
        "codes": 1,
        "quality": 80,
    }
    values.update(fields)
    return FrameHeader.model_validate(values)


def test_a_frame_reads_back() -> None:
    payload = pack_frame(header(), JPEG)
    read, jpeg = unpack_frame(payload)
    assert read == header() and jpeg == JPEG
    assert b"code" not in payload.split(b"\xff\xd8", 1)[0].replace(b'"codes"', b"")


def test_a_frame_over_the_bound_and_things_that_are_not_frames_are_refused() -> None:
    with pytest.raises(PreviewError):
        pack_frame(header(), b"\xff\xd8" + b"\x00" * MAX_FRAME_BYTES + b"\xff\xd9")
    good = pack_frame(header(), JPEG)
    for bad in (
        b"",
        b"GSP1",
        b"XXXX" + good[4:],
        good[:-2],  # the JPEG cut short
        good[:4] + b"\xff\xff" + good[6:],  # a header length beyond the payload
        good.replace(b'"focus":123.4', b'"focus":-1.0'),
        b"\x00" * (MAX_FRAME_BYTES + 1),
    ):
        with pytest.raises(PreviewError):
            unpack_frame(bad)


def test_topics() -> None:
    assert preview_topic("gate-a") == "gatescan/v1/devices/gate-a/preview"
    assert preview_request_topic("gate-a") == "gatescan/v1/devices/gate-a/preview_request"
    assert preview_device("gatescan/v1/devices/gate-a/preview") == "gate-a"
    for other in (
        "gatescan/v1/devices/gate-a/events",
        "gatescan/v1/devices/gate-a/preview_request",
        "gatescan/v1/devices/+/preview",
        "gatescan/v2/devices/gate-a/preview",
    ):
        assert preview_device(other) is None
    with pytest.raises(ValueError):
        preview_topic("gate/a")


def test_a_request_is_checked() -> None:
    ok = b'{"session_id":"abcdefgh12","action":"start","issued_at":"2026-12-06T00:00:00Z"}'
    request = parse_request(ok)
    assert request.ttl_s == 60 and request.fps == 2.0
    for bad in (
        ok.replace(b"start", b"open"),
        ok.replace(b"abcdefgh12", b"short"),
        ok.replace(b"Z", b""),  # no offset
        ok[:-1] + b',"ttl_s":3600}',
        ok[:-1] + b',"fps":30}',
        b"[]",
    ):
        with pytest.raises(PreviewError):
            parse_request(bad)
