"""A gate's frame pipeline on real parts, for the pipeline benchmarks.

`PipelineRig` is what `build_agent` puts together around the frame loop, minus MQTT: the real
`Scanner` (capture thread + decode thread), the decoder `make_decoder` gives, debounce,
credential parsing, policy, a `GpioIndicator` on gpiozero MockFactory pins (whose recorded state
changes time the light), and a real journal (files, fdatasync). Only the camera is a stand-in,
as it must be on a PC: frames from memory, paced like a camera.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gpiozero.pins.mock import MockFactory, MockPin

from device.camera.source import Frame, FrameSource
from device.decode.base import Decoder
from device.frames.framing import Framing
from device.frames.scene import SceneWatch
from device.indicator.gpio import GpioIndicator, IndicatorPins
from device.journal.journal import Journal
from device.scanner import Scan, Scanner
from device.system.clock import SystemClock
from device.system.health import Health
from device.verdict.debounce import Debounce
from device.verdict.events import EventBuilder
from device.verdict.policy import Policy
from gatescan.testing.gate_frames import empty_set
from gatescan.testing.samples import sample_cards
from gatescan.testing.site_policies import SampleSite
from protocol.verdicts import CredentialType, Direction

GREEN, RED = 17, 27  # IndicatorPins' defaults


@dataclass
class PipelineRig:
    scanner: Scanner
    pins: MockFactory
    indicator: GpioIndicator
    journal: Journal
    stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the frame loop (its decode side in a thread of its own, as the agent's main)."""
        self._thread = threading.Thread(target=self.scanner.run, args=(self.stop,), name="decode")
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.scanner.source.close()
        self.indicator.close()
        self.journal.close()

    def pin(self, number: int) -> MockPin:
        pin: MockPin = self.pins.pin(number)
        return pin


def build_rig(
    source: FrameSource,
    data_dir: Path,
    decoder: Decoder,
    *,
    policy: Policy | None = None,
    framing: Framing | None = None,
    scene_watch: SceneWatch | None = None,
    on_scan: Callable[[Scan], None] = lambda scan: None,
) -> PipelineRig:
    """The agent's frame loop around `source`; `scene_watch` defaults to the agent's own."""
    pins = MockFactory()
    indicator = GpioIndicator(IndicatorPins(), pin_factory=pins)
    journal = Journal(data_dir)
    scanner = Scanner(
        source=source,
        decoder=decoder,
        debounce=Debounce(3.0),
        policy=policy or Policy("log"),
        indicator=indicator,
        journal=journal,
        builder=EventBuilder(
            device_id="bench-gate",
            site_id="bench",
            direction=Direction.IN,
            boot_id="bench",
            clock=SystemClock(),
        ),
        health=Health(),
        notify_uplink=lambda: None,
        on_scan=on_scan,
        framing=framing,
        scene_watch=scene_watch or SceneWatch(),
    )
    return PipelineRig(scanner, pins, indicator, journal)


def access_policy(cards: Iterable[bytes]) -> Policy:
    """`cards` granted (green: the site's allow list names them), anything else denied (red):
    showings can alternate the lights."""
    site = SampleSite("bench")
    site.allow(*(card[:12].decode("ascii") for card in cards))
    held = site.held()
    return Policy("access", [CredentialType.CCCD], held=lambda: held)


def distinct_cards(count: int) -> list[bytes]:
    """Valid CCCD payloads with distinct numbers (the last six digits vary)."""
    cards = sample_cards()
    payloads = []
    for index in range(count):
        person = cards[index % len(cards)]
        number = person.id12[:6] + f"{index:06d}"
        payloads.append(person.payload().replace(person.id12.encode(), number.encode()))
    return payloads


def switched_on(pin: MockPin, cleared_at: float) -> list[float]:
    """Monotonic times at which `pin` turned on since `clear_states()` (called at cleared_at).

    MockPin records each change as (seconds since the previous change, state)."""
    times, at = [], cleared_at
    for change in list(pin.states)[1:]:
        at += change.timestamp
        if change.state:
            times.append(at)
    return times


def first_after(times: Iterable[float], start: float, end: float) -> float | None:
    return min((at for at in times if start <= at < end), default=None)


def empty_lane(count: int = 16, sigma: float = 3.0, seed: int = 5) -> list[Frame]:
    """A camera looking at an empty lane: one room (gatescan/testing/gate_frames.py), `count`
    frames of it, each with fresh sensor noise of `sigma` grey levels, as a sensor never repeats
    itself."""
    room = empty_set(1)[0].frame.astype(np.float32)
    rng = np.random.default_rng(seed)
    return [
        np.clip(room + rng.normal(0.0, sigma, room.shape), 0, 255).astype(np.uint8)
        for _ in range(count)
    ]
