"""The frame loop: source, decoder, debounce, credential, verdict, light, journal, send.

Order matters: the indicator is told first (it returns at once), the journal write is durable next,
and the uplink is only nudged (it sends from its own thread). Nothing here waits on the network.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from device.camera import CameraError, Frame, FrameSource
from device.credentials import ParseResult, parse_credential
from device.debounce import Debounce
from device.decode import DecodedCode, Decoder
from device.events import EventBuilder
from device.health import Health
from device.indicator import Indicator
from device.journal import Journal, JournalError
from device.policy import Policy, Verdict
from protocol import Event

log = logging.getLogger("gatescan.scanner")

CAMERA_FAULT = "camera"
STORAGE_FAULT = "storage"


@dataclass(frozen=True)
class Scan:
    """One showing of a code and what the gate did about it."""

    code: DecodedCode
    parsed: ParseResult
    verdict: Verdict
    event: Event
    journaled: bool


@dataclass
class ScanStats:
    """Frame rate and decode time since the last snapshot, for telemetry."""

    clock: Callable[[], float] = time.monotonic
    frames: int = 0
    decode_seconds: list[float] = field(default_factory=list)
    scans: int = 0
    _since: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._since = self.clock()

    def add_frame(self, decode_seconds: float) -> None:
        self.frames += 1
        if len(self.decode_seconds) < 10_000:
            self.decode_seconds.append(decode_seconds)

    def snapshot(self) -> tuple[float, float]:
        """(frames per second, median decode ms) since the last snapshot; then start afresh."""
        now = self.clock()
        elapsed = max(now - self._since, 1e-9)
        fps = self.frames / elapsed
        decode_ms = statistics.median(self.decode_seconds) * 1000 if self.decode_seconds else 0.0
        self.frames, self.decode_seconds, self._since = 0, [], now
        return fps, decode_ms


class Scanner:
    def __init__(
        self,
        *,
        source: FrameSource,
        decoder: Decoder,
        debounce: Debounce,
        policy: Policy,
        indicator: Indicator,
        journal: Journal,
        builder: EventBuilder,
        health: Health,
        notify_uplink: Callable[[], None],
        on_scan: Callable[[Scan], None] = lambda scan: None,
        stats: ScanStats | None = None,
    ) -> None:
        self.source = source
        self.decoder = decoder
        self.debounce = debounce
        self.policy = policy
        self.indicator = indicator
        self.journal = journal
        self.builder = builder
        self.health = health
        self.notify_uplink = notify_uplink
        self.on_scan = on_scan
        self.stats = stats or ScanStats()

    def run(self, stop: threading.Event, max_backoff: float = 30.0) -> None:
        """Scan until `stop` is set; a failing camera is retried with backoff, never fatal."""
        backoff = 1.0
        while not stop.is_set():
            try:
                frame = self.source.read()
            except CameraError as exc:
                self.health.set_fault(CAMERA_FAULT)
                log.error("camera: %s; retrying in %.0f s", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            backoff = 1.0
            self.health.clear_fault(CAMERA_FAULT)
            self.process(frame)

    def process(self, frame: Frame) -> list[Scan]:
        started = time.perf_counter()
        codes = self.decoder.decode(frame)
        self.stats.add_frame(time.perf_counter() - started)
        return [self._handle(code) for code in codes if self.debounce.is_new_showing(code.data)]

    def _handle(self, code: DecodedCode) -> Scan:
        parsed = parse_credential(code.data)
        verdict = self.policy.decide(parsed)
        self.indicator.show(verdict.status)  # light first: never after disk or network
        event = self.builder.build(self.journal.next_seq(), parsed, verdict)
        journaled = self._journal(event)
        if journaled:
            self.notify_uplink()
        self.stats.scans += 1
        scan = Scan(code=code, parsed=parsed, verdict=verdict, event=event, journaled=journaled)
        self.on_scan(scan)
        return scan

    def _journal(self, event: Event) -> bool:
        try:
            self.journal.record(event)
        except JournalError as exc:
            self.health.set_fault(STORAGE_FAULT)
            log.error("journal: event seq %d not recorded: %s", event.seq, exc)
            return False
        self.health.clear_fault(STORAGE_FAULT)
        return True
