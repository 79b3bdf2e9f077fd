"""Per-gate ingest limits: token buckets of messages and bytes, keyed by the topic's device id.

One compromised gate must not be able to fill the server's disk or take the collector's time
from the other gates. Each gate (the device id in the topic: the broker's ACL lets a gate write
only under its own) has two buckets, checked on paho's network thread before a message is parsed:

- messages: `max_messages_per_second` tokens a second, one per message;
- bytes: `max_bytes_per_minute` / 60 tokens a second, one per payload byte (a payload larger
  than the whole bucket is charged the whole bucket, so it passes once the bucket is full).

Each bucket holds BURST_S seconds of its rate: a gate may send that much at once (a journal's
backlog of thousands of events after an outage passes at full speed), and then its rate.
BURST_S is a gate's default `resend_after`: a gate whose messages were dropped waits that long
before it sends them again, and by then its bucket has filled, so a long backlog flush still
goes at about the limit's rate rather than stalling.

A message over either limit is dropped by the collector: not parsed, not stored, not answered,
but PUBACKed with its batch (docs/architecture.md, "Per-gate limits"). A gate resends every
event not acked, so a valid event is never lost, only delayed; an invalid one is dead-lettered
and answered when a resend comes within the limit.

Buckets that have filled up again are forgotten (a full bucket is what a new gate gets), so the
limiter's memory follows the gates that sent within the last BURST_S seconds or so, whatever
device ids a broker without an ACL lets through. The clock is injected: tests run on a fake one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Defaults, well above what a real gate needs: it scans a few people a second, and flushes its
# backlog at up to about 10,000 events a second (docs/benchmarks.md, flush) after an outage.
# 10 s of 1,000 a second lets a backlog of 10,000 events through at once, and a longer one at
# 1,000 a second; a gate's events are about 0.5 KB, so 32 MiB a minute (about 560 KB a second)
# bites on messages far larger than events, not on a flush. gatescan/options.py repeats these
# numbers for `--help` (tests/gatescan/test_options.py checks they agree).
DEFAULT_MAX_MESSAGES_PER_SECOND = 1000.0
DEFAULT_MAX_BYTES_PER_MINUTE = 32 * 1024 * 1024
BURST_S = 10.0
# How often (at most) full buckets are swept from memory.
SWEEP_EVERY_S = 60.0


@dataclass(frozen=True)
class GateLimits:
    """The per-gate limits; 0 turns one off."""

    max_messages_per_second: float = DEFAULT_MAX_MESSAGES_PER_SECOND
    max_bytes_per_minute: float = DEFAULT_MAX_BYTES_PER_MINUTE

    def __post_init__(self) -> None:
        for name in ("max_messages_per_second", "max_bytes_per_minute"):
            value = getattr(self, name)
            if not value >= 0:  # NaN too
                raise ValueError(f"{name} must be 0 (no limit) or more, not {value}")

    @property
    def off(self) -> bool:
        return not self.max_messages_per_second and not self.max_bytes_per_minute


NO_LIMITS = GateLimits(0, 0)
DEFAULT_LIMITS = GateLimits()


class GateLimiter:
    """Decides, per message, whether its gate is within its limits. One thread calls `allow`
    (paho's network thread); `dropped` may be read from any."""

    def __init__(
        self, limits: GateLimits = DEFAULT_LIMITS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._message_rate = limits.max_messages_per_second
        self._byte_rate = limits.max_bytes_per_minute / 60.0
        # Without a limit a bucket is never short: an infinite capacity.
        self._message_capacity = self._message_rate * BURST_S or float("inf")
        self._byte_capacity = self._byte_rate * BURST_S or float("inf")
        # device id -> [message tokens, byte tokens, when last refilled]
        self._buckets: dict[str, list[float]] = {}
        self._next_sweep = clock() + SWEEP_EVERY_S

    def allow(self, device_id: str, size: int) -> bool:
        """Take one message of `size` bytes from the gate's buckets if both hold enough;
        False (and nothing taken) if either does not."""
        now = self._clock()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            if now >= self._next_sweep:
                self._sweep(now)
            bucket = self._buckets[device_id] = [self._message_capacity, self._byte_capacity, now]
        else:
            elapsed = now - bucket[2]
            if elapsed > 0:
                bucket[0] = min(self._message_capacity, bucket[0] + elapsed * self._message_rate)
                bucket[1] = min(self._byte_capacity, bucket[1] + elapsed * self._byte_rate)
                bucket[2] = now
        cost = min(size, self._byte_capacity)
        if bucket[0] < 1.0 or bucket[1] < cost:
            return False
        bucket[0] -= 1.0
        bucket[1] -= cost
        return True

    def _sweep(self, now: float) -> None:
        """Forget the gates whose buckets have filled up again since they last sent."""
        self._next_sweep = now + SWEEP_EVERY_S
        message_rate, byte_rate = self._message_rate, self._byte_rate
        full = [
            device_id
            for device_id, (messages, size, then) in self._buckets.items()
            if (messages + (now - then) * message_rate >= self._message_capacity)
            and (size + (now - then) * byte_rate >= self._byte_capacity)
        ]
        for device_id in full:
            del self._buckets[device_id]

    def tracked(self) -> int:
        """How many gates have a bucket in memory now."""
        return len(self._buckets)
