"""Failpoints of the agent: named spots where a test makes the gate misbehave on purpose.

The collector has its own (server/collector/failpoints.py, GATESCAN_FAILPOINTS); these are the
gate's, read from their own variable so that an environment armed for one process cannot trip
the other. A fault test plants a bug with one to check that its own count would see it (a
mutation check): a scenario that still passes with the bug planted is not testing the promise.

    GATESCAN_AGENT_FAILPOINTS="agent.drop_after_light=drop:2"

is a ';'-separated list of `point=action`. The points and their actions:

- `agent.drop_after_light=drop` (the first showing) or `drop:N` (the N-th showing of this
  process): the showing is lit, then neither journaled nor held nor logged as a scan, as if the
  code between the light and the journal lost it. Exactly the loss a count taken from the gate's
  own journal cannot see.

Inert unless the variable is set: `reached` is then one dict lookup. A spec naming an unknown point
or action is refused with ValueError when the agent starts, so a typo cannot leave a mutation
check silently testing nothing; the agent logs a warning when any point is armed, and another when
a point fires.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

log = logging.getLogger(__name__)

AGENT_FAILPOINTS_ENV = "GATESCAN_AGENT_FAILPOINTS"
DROP_AFTER_LIGHT = "agent.drop_after_light"
KNOWN_POINTS = {DROP_AFTER_LIGHT: "drop"}  # point -> its action
_ACTION = re.compile(r"([a-z]+)(?::([1-9][0-9]{0,8}))?")


class Failpoints:
    """Which points fire on which hit. Empty (inert) unless given some."""

    def __init__(self, fire_at: Mapping[str, int] | None = None) -> None:
        unknown = set(fire_at or {}) - set(KNOWN_POINTS)
        if unknown:
            raise ValueError(
                f"unknown agent failpoint(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(KNOWN_POINTS))}"
            )
        self._fire_at = dict(fire_at or {})
        self._hits: dict[str, int] = {}

    @classmethod
    def parse(cls, spec: str) -> Failpoints:
        """`agent.drop_after_light=drop:2` as Failpoints; ValueError naming the bad item."""
        fire_at: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in spec.split(";"))):
            point, _, action = (part.strip() for part in item.partition("="))
            expected = KNOWN_POINTS.get(point)
            if expected is None:
                raise ValueError(
                    f"{AGENT_FAILPOINTS_ENV}: unknown agent failpoint {point!r} in {item!r}; "
                    f"known: {', '.join(sorted(KNOWN_POINTS))}"
                )
            matched = _ACTION.fullmatch(action)
            if matched is None or matched.group(1) != expected:
                raise ValueError(
                    f"{AGENT_FAILPOINTS_ENV}: bad action in {item!r}: use "
                    f"{point}={expected} or {point}={expected}:N (N >= 1)"
                )
            fire_at[point] = int(matched.group(2) or 1)
        return cls(fire_at)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Failpoints:
        """The failpoints GATESCAN_AGENT_FAILPOINTS names (none when unset or empty)."""
        spec = env.get(AGENT_FAILPOINTS_ENV, "").strip()
        failpoints = cls.parse(spec)
        if failpoints.active:
            log.warning(
                "fault injection: %s=%r (a test setting; never on a gate)",
                AGENT_FAILPOINTS_ENV,
                spec,
            )
        return failpoints

    @property
    def active(self) -> dict[str, int]:
        """point -> the hit that fires."""
        return dict(self._fire_at)

    def reached(self, point: str) -> bool:
        """Count a pass through `point`; True when this pass is the one it fires on."""
        if point not in self._fire_at:
            return False
        hit = self._hits.get(point, 0) + 1
        self._hits[point] = hit
        if hit != self._fire_at[point]:
            return False
        log.warning("failpoint %s reached (hit %d): %s", point, hit, KNOWN_POINTS[point])
        return True
