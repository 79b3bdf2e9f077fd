"""What the gate's lights show between scans while something is wrong, on the real wiring.

The agent is built by `build_agent` from a real config and runs in a thread; its indicator drives
gpiozero MockFactory pins (passed in explicitly), whose recorded state changes are the lights.
Between scans a gate without its broker blinks `offline` (red 0.1 s every 2 s), and a gate with a
fault alternates red and green every 0.5 s (`fault`); a verdict plays over either and the
background pattern comes back after it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from device.app import Agent, build_agent
from device.indicator.base import IndicatorState, background_state
from device.scanner import Scan
from device.system.health import Fault, Health
from device.system.systemd_notify import SystemdNotifier
from firmware_config.loader import ConfigOverrides, load_config
from gatescan.testing.broker import free_port
from tests.support.fault_site import distinct_cards
from tests.support.lane import Lane, LaneGate, write_lane_config
from tests.support.waiting import wait_until

GREEN, RED = 17, 27  # the config's default pins


def changes(pin: MockPin) -> list[tuple[float, bool]]:
    """(seconds since the pin's states were cleared, state) of each recorded change."""
    elapsed, found = 0.0, []
    for change in list(pin.states):
        elapsed += change.timestamp  # MockPin records the time since the previous change
        found.append((elapsed, bool(change.state)))
    return found


def turned_on(pin: MockPin, after: float = 0.0) -> list[float]:
    return [at for at, state in changes(pin)[1:] if state and at >= after]


@dataclass
class RunningGate:
    agent: Agent
    lane: Lane
    pins: MockFactory
    scans: list[Scan]
    health_states: list[IndicatorState]


@pytest.fixture
def gate_without_broker(tmp_path: Path) -> Iterator[RunningGate]:
    """A gate whose broker never answers (nothing listens on its port)."""
    lane = Lane(tmp_path / "lane")
    config = load_config(
        write_lane_config(tmp_path / "gate.toml", LaneGate(lane.folder)),
        overrides=ConfigOverrides(
            broker=f"mqtt://127.0.0.1:{free_port()}", data_dir=tmp_path / "gate"
        ),
        env={},
    )
    pins = MockFactory()
    scans: list[Scan] = []
    agent = build_agent(
        config, pin_factory=pins, on_scan=scans.append, notifier=SystemdNotifier(None)
    )
    states: list[IndicatorState] = []
    shown = [background_state(agent.health)]

    def record(health: Health) -> None:
        # Changes of what the light shows: a health change behind the same light (the reason
        # the link is down, the clock's sync while offline) is none.
        state = background_state(health)
        if state is not shown[-1]:
            shown.append(state)
            states.append(state)

    agent.health.watch(record)
    stop = threading.Event()
    running = threading.Thread(target=agent.run, args=(stop,), name="agent")
    running.start()
    yield RunningGate(agent, lane, pins, scans, states)
    stop.set()
    running.join(timeout=20)
    assert not running.is_alive()


def test_offline_blinks_between_scans_while_the_broker_is_down(
    gate_without_broker: RunningGate,
) -> None:
    gate = gate_without_broker
    red, green = gate.pins.pin(RED), gate.pins.pin(GREEN)
    card = distinct_cards(1, batch=10)[0]
    red.clear_states()
    green.clear_states()
    gate.lane.show(card)
    wait_until(lambda: gate.scans, 10, "the scan")
    assert not gate.agent.health.online
    [verdict_on] = wait_until(lambda: turned_on(green), 2, "the green verdict light")
    # The recorded pattern lights green for 0.5 s; then the offline blink starts again: dark
    # 1.9 s, red 0.1 s.
    blink = wait_until(lambda: turned_on(red, after=verdict_on + 0.5), 4, "the offline blink")
    assert 1.8 < blink[0] - (verdict_on + 0.5) < 2.3, changes(red)
    off = wait_until(
        lambda: [at for at, state in changes(red) if not state and at > blink[0]], 1, "red off"
    )
    assert off[0] - blink[0] < 0.3, "a short blink, not a red verdict"
    assert turned_on(green, after=verdict_on + 0.1) == [], "no green while offline"
    assert gate.health_states == [], "offline all along: no state change"


def test_fault_alternates_red_and_green_while_present_and_stops_when_it_clears(
    gate_without_broker: RunningGate,
) -> None:
    gate = gate_without_broker
    red, green = gate.pins.pin(RED), gate.pins.pin(GREEN)
    gate.lane.stop_frames()
    wait_until(lambda: IndicatorState.FAULT in gate.health_states, 10, "the camera fault")
    assert gate.agent.health.faults == [Fault.CAMERA]
    red.clear_states()
    green.clear_states()
    wait_until(lambda: len(turned_on(red)) >= 2 and len(turned_on(green)) >= 2, 4, "alternation")
    reds, greens = turned_on(red), turned_on(green)
    # Red and green take turns every 0.5 s (both clocks start at the same clear).
    merged = sorted([(at, "red") for at in reds] + [(at, "green") for at in greens])
    colours = [colour for _, colour in merged]
    assert all(a != b for a, b in itertools.pairwise(colours)), merged
    assert all(0.9 < b - a < 1.1 for a, b in itertools.pairwise(reds)), reds

    gate.lane.clear()  # frames return
    wait_until(lambda: gate.health_states[-1] is IndicatorState.OFFLINE, 10, "fault cleared")


def test_health_prefers_fault_over_offline_over_idle() -> None:
    health = Health()
    assert background_state(health) is IndicatorState.OFFLINE
    health.set_online(True)
    assert background_state(health) is IndicatorState.IDLE
    health.set_fault(Fault.CAMERA)
    assert background_state(health) is IndicatorState.FAULT
    health.set_online(False)
    assert background_state(health) is IndicatorState.FAULT
    health.clear_fault(Fault.CAMERA)
    assert background_state(health) is IndicatorState.OFFLINE
