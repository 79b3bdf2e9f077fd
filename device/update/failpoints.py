"""Failpoints of the updater: the spots between its steps where a test stops it, to kill it there.

    GATESCAN_UPDATER_FAILPOINTS="update.after_switch=stop"

is a ';'-separated list of `point=stop`. At a point so armed the updater writes
`failpoint POINT: stopped` on stderr and sleeps until it is killed: the test kills it (SIGKILL,
by the pid it started), and what is left on disk is what a power cut there would leave. The
variable is the updater's own (the agent's are GATESCAN_AGENT_FAILPOINTS,
device/system/failpoints.py), inert unless set, and a point it does not know is refused at start.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

UPDATER_FAILPOINTS_ENV = "GATESCAN_UPDATER_FAILPOINTS"
AFTER_INSTALL = "update.after_install"  # the release folder in place, no link changed
AFTER_PREVIOUS = "update.after_previous"  # `previous` moved, `current` not yet
AFTER_SWITCH = "update.after_switch"  # `current` moved, the agent not restarted
AFTER_RESTART = "update.after_restart"  # the new agent started, its health not yet judged
KNOWN_POINTS = (AFTER_INSTALL, AFTER_PREVIOUS, AFTER_SWITCH, AFTER_RESTART)


class UpdaterFailpoints:
    def __init__(self, armed: frozenset[str] = frozenset()) -> None:
        unknown = armed - set(KNOWN_POINTS)
        if unknown:
            raise ValueError(
                f"{UPDATER_FAILPOINTS_ENV}: unknown point(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(KNOWN_POINTS)}"
            )
        self.armed = armed

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> UpdaterFailpoints:
        armed = set()
        for item in filter(
            None, (p.strip() for p in env.get(UPDATER_FAILPOINTS_ENV, "").split(";"))
        ):
            point, _, action = (part.strip() for part in item.partition("="))
            if action != "stop":
                raise ValueError(f"{UPDATER_FAILPOINTS_ENV}: use {point}=stop, not {item!r}")
            armed.add(point)
        failpoints = cls(frozenset(armed))
        if armed:
            log.warning("fault injection: %s (a test setting; never on a gate)", sorted(armed))
        return failpoints

    def reached(self, point: str) -> None:
        if point not in self.armed:
            return
        sys.stderr.write(f"failpoint {point}: stopped\n")
        sys.stderr.flush()
        while True:
            time.sleep(3600)
