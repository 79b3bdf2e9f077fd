"""Failpoints: named spots in the collector where a test can make the process die on purpose.

After FoundationDB's and TiKV's failpoints (fail-rs reads them from a FAILPOINTS variable): the
crash tests need the collector to die at an exact step of its ingest, which a kill from outside
can only hit by luck. The points are inert unless the environment variable GATESCAN_FAILPOINTS
names them; then the cost is one dict lookup per step.

    GATESCAN_FAILPOINTS="collector.after_commit=kill:3"

is a ';'-separated list of `point=action`. The action is `kill` (SIGKILL this process the first
time the point is reached) or `kill:N` (the N-th time). The points:

- `collector.before_commit`: an events batch is inserted, its transaction not yet committed;
- `collector.after_commit`: the batch is committed, its ack not yet published;
- `collector.after_ack`: the ack is handed to the MQTT client, the PUBACK not yet sent.

The collector commits events in batches; each point is reached once per batch that holds
events, and counts one hit per events message of the batch, so `kill:N` means "at the batch that
holds the N-th events message". While a point is armed, the collector ends its batches so that the
N-th events message is alone in its batch (`messages_until_kill`): whatever the batching, the
process then dies with exactly the first N-1 (before the commit) or N (after it) events
messages committed, as it did when each message had its own commit.

A spec naming an unknown point or action is refused with ValueError when the collector starts, so
a typo cannot leave a crash test silently testing nothing. Before dying the process writes one
line, `failpoint <point> reached (hit N): killing the collector`, to stderr.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Mapping

FAILPOINTS_ENV = "GATESCAN_FAILPOINTS"
BEFORE_COMMIT = "collector.before_commit"
AFTER_COMMIT = "collector.after_commit"
AFTER_ACK = "collector.after_ack"
KNOWN_POINTS = frozenset({BEFORE_COMMIT, AFTER_COMMIT, AFTER_ACK})
_KILL_ACTION = re.compile(r"kill(?::([1-9][0-9]{0,8}))?")


def kill_this_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Failpoints:
    """Which points kill on which hit. Empty (inert) unless given a spec."""

    def __init__(
        self, kill_at: Mapping[str, int] | None = None, kill: Callable[[], None] = kill_this_process
    ) -> None:
        unknown = set(kill_at or {}) - KNOWN_POINTS
        if unknown:
            raise ValueError(
                f"unknown failpoint(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(KNOWN_POINTS))}"
            )
        self._kill_at = dict(kill_at or {})
        self._hits: dict[str, int] = {}
        self._kill = kill

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Failpoints:
        """The failpoints GATESCAN_FAILPOINTS names (none when it is unset or empty)."""
        spec = (os.environ if environ is None else environ).get(FAILPOINTS_ENV, "")
        return cls.parse(spec)

    @classmethod
    def parse(cls, spec: str) -> Failpoints:
        kill_at: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in spec.split(";"))):
            point, _, action = item.partition("=")
            kill_at[point.strip()] = _kill_hit(action.strip(), item)
        return cls(kill_at)

    @property
    def active(self) -> dict[str, int]:
        """point -> the hit that kills."""
        return dict(self._kill_at)

    def reached(self, point: str, count: int = 1) -> None:
        """Called at a point for `count` messages; kills the process if the configured hit is
        among them."""
        if not self._kill_at or point not in self._kill_at or count < 1:
            return
        before = self._hits.get(point, 0)
        hit = before + count
        self._hits[point] = hit
        kill_at = self._kill_at[point]
        if before < kill_at <= hit:
            message = f"failpoint {point} reached (hit {kill_at}): killing the collector\n"
            os.write(2, message.encode())
            self._kill()

    def messages_until_kill(self) -> int | None:
        """How many more messages the nearest armed point takes to kill (1: the next one), or
        None when no kill is ahead (inert, or every armed point already passed)."""
        ahead = [
            kill_at - self._hits.get(point, 0)
            for point, kill_at in self._kill_at.items()
            if kill_at > self._hits.get(point, 0)
        ]
        return min(ahead, default=None)


def _kill_hit(action: str, item: str) -> int:
    matched = _KILL_ACTION.fullmatch(action)
    if matched is None:
        raise ValueError(f"bad failpoint {item!r}: use point=kill or point=kill:N (N >= 1)")
    return int(matched.group(1) or 1)
