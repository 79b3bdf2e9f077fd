"""Each gate's preview session and its latest frame, in this process's memory only.

A technician's "Start" makes a session (a random id) and sends the gate a `PreviewRequest`
(protocol/preview/wire.py) on the collector's connection; the page renews it while it is open
(every RENEW_S), and it lapses TTL_S after the last renewal, here as on the gate. A frame is kept
only when it names the live session of its own gate (the topic's device id): a frame of no
session, of an old one or of another gate's is dropped. Only the newest frame of each gate is
held, and it is dropped with its session. Nothing here writes anywhere: preview frames show
faces (docs/security.md).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from protocol.preview.wire import (
    DEFAULT_FPS,
    DEFAULT_TTL_S,
    FrameHeader,
    PreviewError,
    PreviewRequest,
    unpack_frame,
)
from protocol.text import printable

log = logging.getLogger("gatescan.preview")

TTL_S = DEFAULT_TTL_S
RENEW_S = 20  # the page renews this often: two renewals may be lost before the session lapses

# `send(device_id, payload)`: a PreviewRequest to the gate; None once the broker took it, else why.
SendRequest = Callable[[str, bytes], str | None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class HeldFrame:
    header: FrameHeader
    jpeg: bytes
    received_at: float  # monotonic


@dataclass
class _Session:
    session_id: str
    by: str
    expires_at: float
    frame: HeldFrame | None = None


class PreviewRelay:
    def __init__(
        self,
        send: SendRequest,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        ttl_s: int = TTL_S,
        fps: float = DEFAULT_FPS,
    ) -> None:
        self._send = send
        self._clock = clock
        self._wall_clock = wall_clock
        self.ttl_s = ttl_s
        self.fps = fps
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self.frames_dropped = 0

    def start(self, device_id: str, by: str) -> tuple[str | None, bool]:
        """Start a session for the gate, or renew the live one: (why not, or None; whether it
        is new). The gate is asked each time (a lost request costs one renewal)."""
        now = self._clock()
        with self._lock:
            self._drop_lapsed(now)
            session = self._sessions.get(device_id)
            new = session is None
            if session is None:
                session = _Session(secrets.token_urlsafe(12), by, 0.0)
            session_id = session.session_id
        problem = self._ask(device_id, session_id, "start", by)
        if problem is not None:
            return problem, False
        with self._lock:
            current = self._sessions.setdefault(device_id, session)
            current.expires_at = self._clock() + self.ttl_s
        if new:
            log.warning("preview of %s started for %s", device_id, printable(by, 64))
        return None, new

    def stop(self, device_id: str, by: str) -> str | None:
        with self._lock:
            session = self._sessions.pop(device_id, None)
        if session is None:
            return None
        log.warning("preview of %s stopped by %s", device_id, printable(by, 64))
        return self._ask(device_id, session.session_id, "stop", by)

    def _ask(self, device_id: str, session_id: str, action: str, by: str) -> str | None:
        request = PreviewRequest(
            session_id=session_id,
            action="start" if action == "start" else "stop",
            issued_at=self._wall_clock(),
            ttl_s=self.ttl_s,
            fps=self.fps,
            by=printable(by, 48)[:64],
        )
        return self._send(device_id, request.to_json())

    def frame_arrived(self, device_id: str, payload: bytes) -> bool:
        """A frame from the gate `device_id` (the topic's): held when it names that gate's live
        session; else dropped. Called on the collector's network thread."""
        try:
            header, jpeg = unpack_frame(payload)
        except PreviewError as exc:
            self.frames_dropped += 1
            log.debug("a preview frame of %s dropped: %s", device_id, exc)
            return False
        now = self._clock()
        with self._lock:
            self._drop_lapsed(now)
            session = self._sessions.get(device_id)
            if session is None or session.session_id != header.session_id:
                self.frames_dropped += 1
                return False
            if session.frame is not None and session.frame.header.seq > header.seq:
                return False  # an older frame overtaken on the way
            session.frame = HeldFrame(header, jpeg, now)
            return True

    def latest(self, device_id: str) -> HeldFrame | None:
        with self._lock:
            self._drop_lapsed(self._clock())
            session = self._sessions.get(device_id)
            return None if session is None else session.frame

    def active(self, device_id: str) -> bool:
        with self._lock:
            self._drop_lapsed(self._clock())
            return device_id in self._sessions

    def now(self) -> float:
        return self._clock()

    def held_bytes(self) -> int:
        """Bytes of frames held now (every gate): what the relay keeps, all of it in memory."""
        with self._lock:
            return sum(len(s.frame.jpeg) for s in self._sessions.values() if s.frame is not None)

    def _drop_lapsed(self, now: float) -> None:
        for device_id in [d for d, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[device_id]  # its frame with it
            log.info("preview of %s lapsed", device_id)
