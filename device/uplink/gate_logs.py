"""The gate's `logs` topic (issue 17): its warnings and errors (device/system/log_ring.py,
redacted there), published every FLUSH_EVERY_S at QoS 0, at most RATE_PER_MINUTE lines a minute
(a token bucket holding BURST), and the lines the limit held back counted in the next message's
`suppressed`: a gate in a loop of errors costs the broker and the collector ten lines a minute,
and the dashboard still says how many more there were. Offline, a message is dropped (QoS 0):
the newest lines stay in the ring for `send_logs`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from device.system.log_ring import LogRecordLine
from protocol.messages import MAX_LOG_LINES, GateLogs, LogLine

RATE_PER_MINUTE = 10.0
BURST = 10
FLUSH_EVERY_S = 2.0
QUEUED_AT_MOST = 100  # lines waiting for a flush; more are counted as suppressed


class TokenBucket:
    """`take()` is True at most `burst` times at once and `rate_per_s` times a second after."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class LogUplink:
    """Hears each new line (`heard`, from the logging thread) and publishes them in batches
    (`flush`, from its own thread once `start`ed) through `publish`."""

    def __init__(
        self,
        device_id: str,
        publish: Callable[[GateLogs], object],
        *,
        rate_per_minute: float = RATE_PER_MINUTE,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._device_id = device_id
        self._publish = publish
        self._bucket = TokenBucket(rate_per_minute / 60.0, burst, clock)
        self._queue: deque[LogRecordLine] = deque()
        self._suppressed = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def heard(self, line: LogRecordLine) -> None:
        with self._lock:
            if len(self._queue) >= QUEUED_AT_MOST:
                self._suppressed += 1
            else:
                self._queue.append(line)

    def flush(self) -> GateLogs | None:
        """Publish what the bucket allows of the lines heard; the rest counted as suppressed.
        The message published, or None when there was nothing to say."""
        with self._lock:
            heard, self._queue = list(self._queue), deque()
            allowed: list[LogRecordLine] = []
            for line in heard:
                if len(allowed) < MAX_LOG_LINES and self._bucket.take():
                    allowed.append(line)
                else:
                    self._suppressed += 1
            if not allowed:
                return None  # the count waits for a line to ride with
            suppressed, self._suppressed = self._suppressed, 0
        message = GateLogs(
            device_id=self._device_id,
            lines=[wire_line(line) for line in allowed],
            suppressed=suppressed,
        )
        self._publish(message)
        return message

    def run(self, stop: threading.Event, every_s: float = FLUSH_EVERY_S) -> None:
        while not stop.wait(every_s):
            # A failure is not logged: it would feed this loop its own error.
            with contextlib.suppress(Exception):
                self.flush()


def wire_line(line: LogRecordLine) -> LogLine:
    fields = {"ts": line.ts, "level": line.level, "logger": line.logger, "message": line.message}
    return LogLine.model_validate(fields)
