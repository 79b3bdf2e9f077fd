"""`gatescan selftest gpio` (issue 17): each of the gate's outputs in turn, green, red, the
buzzer, and the door relay only when asked for (`--include-relay`: a door must not open unasked),
each announced as it comes on, for a technician standing at the gate.

It drives the pins itself, so it refuses to run while the gate's agent runs: the agent holds the
pins and, with them, the journal's lock (device/diagnosis/gate.py `agent_state`). A running gate
is tested by the remote command `selftest_gpio` instead, which its agent plays between scans.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.app import build_gpio
from device.diagnosis.gate import agent_state
from device.indicator.patterns import duration, selftest_pattern
from firmware_config.schema import GateConfig

REFUSED_RUNNING = (
    "the gate's agent is running and holds the pins: stop it first (sudo systemctl stop "
    "gatescan-agent), or ask for the self-test from the dashboard (`selftest_gpio`)"
)


def selftest_gpio(
    config: GateConfig,
    *,
    include_relay: bool = False,
    pin_factory: Any = None,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Play the self-test on the config's pins; 0 once played, 1 when refused (`say` why)."""
    running = agent_state(Path(config.data_dir)).running
    if running:
        say(f"refused: {REFUSED_RUNNING}")
        return 1
    if running is None:
        say("refused: cannot tell whether the agent runs (its journal lock is not readable)")
        return 1
    gpio = build_gpio(config, pin_factory)
    if gpio is None:
        say("refused: the config turns the indicator off (indicator.enabled = false)")
        return 1
    try:
        pattern = selftest_pattern(gpio.outputs, include_relay)
        if not include_relay and config.indicator.relay is not None:
            say("the door relay is left out: --include-relay tests it (the door opens)")
        gpio.play(pattern)
        for current in pattern:
            for output in sorted(current.on):
                pin = getattr(config.indicator, output.value, None)
                say(f"{output.value} (GPIO {pin}): on for {current.seconds:g} s")
            sleep(current.seconds)
        say(f"done: {duration(pattern):.1f} s; every output above should have lit or sounded")
    finally:
        gpio.close()
    return 0
