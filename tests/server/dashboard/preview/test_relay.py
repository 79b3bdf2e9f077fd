"""The relay keeps a gate's newest frame only while that gate's session lives, only a frame
naming it, and nothing at all on disk."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from protocol.preview.wire import FrameHeader, pack_frame, parse_request
from server.dashboard.preview.relay import PreviewRelay

JPEG = b"\xff\xd8" + b"face" * 100 + b"\xff\xd9"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame(session_id: str, seq: int = 1, focus: float = 10.0) -> bytes:
    header = FrameHeader(
        session_id=session_id, seq=seq, ts=datetime(2026, 12, 6, tzinfo=UTC), focus=focus,
        peak=focus, width=64, height=48, roi=(0, 0, 64, 48), codes=0, quality=80,
    )  # fmt: skip
    return pack_frame(header, JPEG)


def relay_with_requests() -> tuple[PreviewRelay, list[tuple[str, dict[str, object]]], Clock]:
    sent: list[tuple[str, dict[str, object]]] = []
    clock = Clock()

    def send(device_id: str, payload: bytes) -> None:
        parse_request(payload)  # a valid request
        sent.append((device_id, json.loads(payload)))

    return PreviewRelay(send, clock=clock, ttl_s=60), sent, clock


def test_a_session_holds_its_own_gates_newest_frame_only() -> None:
    relay, sent, _ = relay_with_requests()
    assert relay.start("gate-a", "alice") == (None, True)
    session = str(sent[0][1]["session_id"])
    assert sent[0][0] == "gate-a" and sent[0][1]["action"] == "start"
    assert relay.start("gate-a", "alice") == (None, False)  # a renewal: same session
    assert sent[1][1]["session_id"] == session
    assert relay.frame_arrived("gate-a", frame(session, 1))
    assert relay.frame_arrived("gate-a", frame(session, 3, focus=50))
    assert not relay.frame_arrived("gate-a", frame(session, 2))  # overtaken
    held = relay.latest("gate-a")
    assert held is not None and held.header.seq == 3 and held.jpeg == JPEG
    # Another gate sending this session's frames on its own topic, a stale session, junk:
    assert not relay.frame_arrived("gate-b", frame(session, 9))
    assert not relay.frame_arrived("gate-a", frame("another-session", 9))
    assert not relay.frame_arrived("gate-a", b"GSP1 junk")
    assert relay.latest("gate-b") is None
    assert relay.latest("gate-a").header.seq == 3  # type: ignore[union-attr]


def test_a_frame_of_no_session_is_dropped_and_a_lapsed_session_drops_its_frame() -> None:
    relay, sent, clock = relay_with_requests()
    assert not relay.frame_arrived("gate-a", frame("session-01"))
    relay.start("gate-a", "alice")
    session = str(sent[0][1]["session_id"])
    relay.frame_arrived("gate-a", frame(session))
    assert relay.held_bytes() == len(JPEG)
    clock.now += 61
    assert relay.latest("gate-a") is None and not relay.active("gate-a")
    assert relay.held_bytes() == 0
    assert not relay.frame_arrived("gate-a", frame(session, 5))


def test_stop_asks_the_gate_and_drops_the_frame() -> None:
    relay, sent, _ = relay_with_requests()
    relay.start("gate-a", "alice")
    session = str(sent[0][1]["session_id"])
    relay.frame_arrived("gate-a", frame(session))
    assert relay.stop("gate-a", "alice") is None
    assert sent[-1][1]["action"] == "stop" and sent[-1][1]["session_id"] == session
    assert relay.latest("gate-a") is None and relay.held_bytes() == 0


def test_a_gate_not_asked_holds_no_session() -> None:
    relay = PreviewRelay(lambda device_id, payload: "the collector is not connected")
    assert relay.start("gate-a", "alice") == ("the collector is not connected", False)
    assert not relay.active("gate-a")
