"""A manager's commands to one gate, on the collector's connection: the dashboard's door release.

`door_releaser(collector)` is what the dashboard calls (server/dashboard/state.py `DoorReleaser`)
when it runs in the same process as a collector (`gatescan server`): it makes the `Command`
(protocol/messages.py), publishes it to the gate's own `command` topic at QoS 1, not retained,
and waits (bounded) for the broker's PUBACK. The gate checks it (device/uplink/commands.py): a
command older than COMMAND_MAX_AGE_S by the gate's clock opens nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from protocol.messages import Command
from protocol.text import printable
from server.collector.batch import utc_now
from server.collector.service import Collector

log = logging.getLogger("gatescan.collector")

PUBACK_WAIT_S = 5.0


def door_releaser(
    collector: Collector,
    *,
    clock: Callable[[], datetime] = utc_now,
    wait_s: float = PUBACK_WAIT_S,
) -> Callable[[str, str, str], str | None]:
    """`release(device_id, by, command_id)`: None once the broker took the command; else why
    not (the collector not connected, the broker's refusal, no answer)."""

    def release(device_id: str, by: str, command_id: str) -> str | None:
        if collector.link_number() == 0:
            return "the collector is not connected to the broker"
        command = Command(
            command_id=command_id,
            action="release_door",
            issued_at=clock(),
            by=printable(by, 48)[:64],
        )
        problem = collector.send_command(device_id, command.to_json()).wait(wait_s)
        if problem is None:
            log.warning("door of %s: release command %s sent for %s", device_id, command_id, by)
        else:
            log.error("door of %s: release command %s not sent: %s", device_id, command_id, problem)
        return problem

    return release
