"""The preview's tap on the frame loop: the latest frame, copied only while a session is alive.

The scanner calls `offer(frame, codes)` after each frame (device/scanner.py), on its decode
thread, before the frame's buffer goes back to the camera. With no session that is one attribute
read; with one, at most `fps` frames a second are copied (a numpy copy, about a millisecond for
a 1280x720 grey frame) into a one-frame slot, and everything else, the focus score, the picture
and its JPEG, runs on the preview's own thread, which drops a frame rather than make the scanner
wait for it. The thread runs only while a session lives and ends with the last one.

A session is the server's (a `PreviewRequest`, by MQTT) or a local `gatescan preview`'s (the
agent's socket, device/preview/local.py); each lapses `ttl_s` after it was last renewed, so a
dashboard closed or a link lost stops the frames by itself. Frames live in memory only, for one
turn of the thread: nothing here writes a frame anywhere.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from device.frames.framing import Region
from device.preview.focus import focus_score
from device.preview.picture import JPEG_BUDGET, PREVIEW_WIDTH, Grey, make_picture, roi_of
from protocol.preview.wire import FrameHeader, PreviewError, pack_frame

log = logging.getLogger("gatescan.preview")

MAX_FPS = 4.0
IDLE_WAKE_S = 0.25  # the thread notices a lapsed session this often without frames

Send = Callable[[bytes], object]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Session:
    send: Send
    expires_at: float
    fps: float
    seq: int = 0
    peak: float = 0.0
    due: float = field(default=0.0)


class PreviewTap:
    """Sessions, the one-frame slot and the thread that turns frames into preview frames."""

    def __init__(
        self,
        *,
        region: Region | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
        width: int = PREVIEW_WIDTH,
        budget: int = JPEG_BUDGET,
    ) -> None:
        self.region = region
        self._clock = clock
        self._wall_clock = wall_clock
        self._width = width
        self._budget = budget
        self._lock = threading.Condition()
        self._sessions: dict[str, _Session] = {}
        self._slot: tuple[Grey, int] | None = None
        self._thread: threading.Thread | None = None
        self._next_copy = 0.0
        self._interval = 1.0
        self.active = False
        """Read without the lock on the frame path: True while any session lives."""
        self.frames_made = 0

    # -- the frame loop's side ------------------------------------------------------------

    def offer(self, frame: Grey, codes: int) -> None:
        """The scanner's frame, and how many codes it read in it. Returns at once."""
        if not self.active:
            return
        now = self._clock()
        if now < self._next_copy:
            return
        self._next_copy = now + self._interval
        copy = np.array(frame, dtype=np.uint8, copy=True)
        with self._lock:
            self._slot = (copy, codes)
            self._lock.notify()

    # -- sessions ---------------------------------------------------------------------------

    def start(self, key: str, *, ttl_s: float, fps: float, send: Send) -> bool:
        """Start or renew a session; True when it is new."""
        fps = max(0.1, min(MAX_FPS, fps))
        with self._lock:
            session = self._sessions.get(key)
            new = session is None
            if session is None:
                session = self._sessions[key] = _Session(send, 0.0, fps)
            session.expires_at = self._clock() + ttl_s
            session.fps = fps
            session.send = send
            self._interval = 1.0 / max(s.fps for s in self._sessions.values())
            self.active = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="preview", daemon=True)
                self._thread.start()
        if new:
            log.warning("preview %s started (%.1f fps, %.0f s unless renewed)", key, fps, ttl_s)
        return new

    def stop(self, key: str) -> bool:
        with self._lock:
            gone = self._sessions.pop(key, None) is not None
            self._lock.notify()
        if gone:
            log.warning("preview %s stopped", key)
        return gone

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
            self.active = False
            self._lock.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=2)

    def sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    # -- the preview's thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                self._drop_lapsed()
                if not self._sessions:
                    self.active = False
                    self._slot = None
                    self._thread = None
                    return
                if self._slot is None:
                    self._lock.wait(IDLE_WAKE_S)
                taken, self._slot = self._slot, None
            if taken is not None:
                try:
                    self._make_and_send(*taken)
                except Exception:  # a preview must never end the agent
                    log.exception("preview frame not made")

    def _drop_lapsed(self) -> None:
        now = self._clock()
        for key in [key for key, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]
            log.warning("preview %s lapsed (not renewed)", key)
        if self._sessions:
            self._interval = 1.0 / max(s.fps for s in self._sessions.values())

    def _make_and_send(self, frame: Grey, codes: int) -> None:
        focus = round(focus_score(roi_of(frame, self.region)), 1)
        picture = make_picture(
            frame, self.region, codes=codes, width=self._width, budget=self._budget
        )
        self.frames_made += 1
        now, ts = self._clock(), self._wall_clock()
        with self._lock:
            due = [(key, s) for key, s in self._sessions.items() if s.due <= now]
            for _, session in due:
                session.due = now + 1.0 / session.fps * 0.9
                session.seq += 1
                session.peak = max(session.peak, focus)
            sends = [
                (key, s.send, FrameHeader(
                    session_id=key, seq=s.seq, ts=ts, focus=focus, peak=s.peak,
                    width=picture.width, height=picture.height, roi=picture.roi,
                    codes=min(codes, 64), quality=picture.quality,
                ))
                for key, s in due
            ]  # fmt: skip
        for key, send, header in sends:
            try:
                send(pack_frame(header, picture.jpeg))
            except PreviewError as exc:
                log.warning("preview %s: frame not sent: %s", key, exc)
            except Exception:
                log.exception("preview %s: frame not sent", key)
