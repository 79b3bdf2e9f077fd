"""The frame loop: source, decoder, debounce, credential, verdict, light, journal, send.

`Scanner.run` runs the loop as two threads joined by a one-slot handoff (device/pipeline.py): a
capture thread reads the camera and always overwrites the slot with its newest frame; the
caller's thread takes the newest frame and decodes it, so a slow decode drops stale frames (they
are counted) instead of answering old ones. `Scanner.process` is one frame of the decode side.

Order matters: the indicator is told first (it returns at once), the journal write is durable next,
and the uplink is only nudged (it sends from its own thread). Nothing here waits on the network.

When the journal cannot be written (the SD card is full, an I/O error), the gate goes on reading
and lighting: `EventRecorder` holds the events the journal refused in memory, in scan order, and
journals them as soon as a write succeeds again (it retries every `retry_every` seconds, also
when nobody scans). The `storage` fault is up from the first refused write until the last held
event is journaled. The hold is bounded (`MAX_HELD_EVENTS`); past it the oldest held event is
dropped (recent entries say who is inside now), logged with its event id and time, and counted.
Held events live in memory only: a power cut or a restart before the disk has room loses them.

Each scan is logged at INFO (verdict, reason, a short digest of the code, and whether it was
journaled), so what the gate showed can be followed from outside the process. After every frame
decoded the loop calls `on_progress`: the systemd watchdog is pinged only from there, so a camera
that fails or hangs, or a decode that fails on every frame, stops the pings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from device.camera import Frame, FrameSource
from device.credentials import ParseResult, parse_credential
from device.debounce import Debounce
from device.decode import DecodedCode, Decoder
from device.events import EventBuilder
from device.health import Health
from device.indicator import Indicator
from device.journal import Journal
from device.pipeline import (
    CAMERA_FAULT,
    FrameCapture,
    Framing,
    HandedFrame,
    LatestFrame,
)
from device.pipeline_scene import SceneWatch
from device.pipeline_stats import ScanStats, StatsSnapshot
from device.policy import Policy, Verdict
from protocol import Event

log = logging.getLogger("gatescan.scanner")

__all__ = [
    "CAMERA_FAULT",
    "STORAGE_FAULT",
    "EventRecorder",
    "Scan",
    "ScanStats",
    "Scanner",
    "StatsSnapshot",
]

STORAGE_FAULT = "storage"
# Held events while the journal cannot be written: about 1.7 KB each, so 5,000 take some 9 MB,
# and last 2.8 hours of a turnstile lane at its fastest (a code every 2 s), a day or more at a
# quiet entrance: time for a technician to free the card before anything is dropped.
MAX_HELD_EVENTS = 5000
RETRY_JOURNAL_EVERY_S = 1.0
# Without frames (a failed camera) the decode thread still wakes this often: to retry the journal
# and to notice the stop event, which a frame's arrival cannot signal then.
IDLE_WAKE_S = 0.1
# How long stopping waits for the capture thread, which may be inside a camera read (each read
# gives up within a few seconds: picamera2 2 s, a network stream 5 s).
CAPTURE_JOIN_S = 6.0


@dataclass(frozen=True)
class Scan:
    """One showing of a code and what the gate did about it.

    `journaled` False: the journal refused the write and the event is held in memory (see
    EventRecorder); its `seq` is then provisional, and it gets the next free one when journaled.
    """

    code: DecodedCode
    parsed: ParseResult
    verdict: Verdict
    event: Event
    journaled: bool


class EventRecorder:
    """Journals events in scan order; holds those the journal refuses until it takes them."""

    def __init__(
        self,
        *,
        journal: Journal,
        health: Health,
        notify_uplink: Callable[[], None],
        max_held: int = MAX_HELD_EVENTS,
        retry_every: float = RETRY_JOURNAL_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_held < 1:
            raise ValueError(f"max_held must be at least 1, not {max_held}")
        self.journal = journal
        self.health = health
        self.notify_uplink = notify_uplink
        self.retry_every = retry_every
        self.dropped = 0
        """Held events dropped because more than `max_held` were waiting: lost."""
        self._held: deque[Event] = deque()
        self._max_held = max_held
        self._clock = clock
        self._next_retry = 0.0

    @property
    def held(self) -> int:
        return len(self._held)

    def record(self, event: Event) -> Event | None:
        """Journal `event` after any held ones: the event as journaled (its seq may differ from
        the one it was built with), or None when it is held in memory for now."""
        if len(self._held) >= self._max_held:
            lost = self._held.popleft()
            self.dropped += 1
            log.error(
                "journal: %d events held in memory; dropped the oldest (event %s of %s): lost",
                self._max_held,
                lost.event_id,
                lost.ts.isoformat(),
            )
        self._held.append(event)
        journaled = self._flush()
        return journaled.get(event.event_id)

    def retry_if_due(self) -> None:
        """Journal held events if the last attempt is `retry_every` seconds old."""
        if self._held and self._clock() >= self._next_retry:
            self._flush()

    def retry_now(self) -> int:
        """Try to journal every held event now (before shutting down); returns how many are left."""
        if self._held:
            self._flush()
        return len(self._held)

    def _flush(self) -> dict[str, Event]:
        """Journal held events, oldest first, until one is refused; returns those journaled."""
        was_refused = STORAGE_FAULT in self.health.faults
        journaled: dict[str, Event] = {}
        while self._held:
            try:
                sequenced = self._journal(self._held[0])
            except OSError as exc:  # JournalError: disk full, I/O error
                if not was_refused:
                    log.error("journal: cannot write (%s); holding events in memory", exc)
                self.health.set_fault(STORAGE_FAULT)
                self._next_retry = self._clock() + self.retry_every
                break
            if sequenced is not None:
                journaled[sequenced.event_id] = sequenced
            self._held.popleft()
        if journaled:
            self.notify_uplink()
        if not self._held:
            if was_refused:
                log.info("journal: writable again; %d held events journaled", len(journaled))
            self.health.clear_fault(STORAGE_FAULT)
        return journaled

    def _journal(self, event: Event) -> Event | None:
        """The event as journaled, or None if the journal can never take it. Raises OSError."""
        # The seq is given when the journal takes the event, so held events keep scan order and
        # never reuse a seq that a failed write may have used up.
        sequenced = event.model_copy(update={"seq": self.journal.next_seq()})
        try:
            self.journal.record(sequenced)
        except ValueError as exc:
            for pending in self.journal.pending():
                if pending.event_id == event.event_id:
                    return pending  # a write reported as failed had landed after all
            self.dropped += 1
            log.error("journal: refused event %s for good: %s", event.event_id, exc)
            return None
        return sequenced


class Scanner:
    """The frame loop. `notify_uplink` is handed to the default EventRecorder (a recorder passed
    in brings its own); `framing` is the region of interest and decode scale; `scene_watch`
    spares the decoder unchanged frames in `run` (None: decode every frame)."""

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
        on_progress: Callable[[], object] = lambda: None,
        stats: ScanStats | None = None,
        recorder: EventRecorder | None = None,
        framing: Framing | None = None,
        scene_watch: SceneWatch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.decoder = decoder
        self.debounce = debounce
        self.policy = policy
        self.indicator = indicator
        self.journal = journal
        self.builder = builder
        self.health = health
        self.on_scan = on_scan
        self.on_progress = on_progress
        self.stats = stats or ScanStats()
        self.recorder = recorder or EventRecorder(
            journal=journal, health=health, notify_uplink=notify_uplink
        )
        self.framing = framing or Framing()
        self.scene_watch = scene_watch
        self._clock = clock
        self._last_frame_at = clock()
        self.frame_errors = 0
        self.handoff = LatestFrame(clock)
        """The slot between the capture and decode threads (a fresh one for every run)."""

    def run(self, stop: threading.Event, max_backoff: float = 30.0) -> None:
        """Scan until `stop` is set: capture in a thread of its own, decode in the caller's.

        A failing camera is retried with backoff, never fatal. On the way out `stop` is set (so
        the capture thread ends with the decode loop, however that ends) and the capture thread
        is given CAPTURE_JOIN_S to finish its read; the caller closes the source after this.
        """
        self.handoff = handoff = LatestFrame(self._clock)
        capture = FrameCapture(self.source, handoff, self.health, max_backoff=max_backoff)
        thread = threading.Thread(target=capture.run, args=(stop,), name="capture", daemon=True)
        self._last_frame_at = self._clock()
        thread.start()
        try:
            self._decode_frames(stop, handoff, capture)
        finally:
            stop.set()
            thread.join(timeout=CAPTURE_JOIN_S)
            if thread.is_alive():
                log.warning("camera: a read still hangs after %.0f s of stopping", CAPTURE_JOIN_S)
            handoff.discard()

    def _decode_frames(
        self, stop: threading.Event, handoff: LatestFrame, capture: FrameCapture
    ) -> None:
        last_number = 0
        while True:
            self.recorder.retry_if_due()
            handed = handoff.take(timeout=IDLE_WAKE_S)
            if handed is None:
                if stop.is_set() or handoff.closed:
                    return
                continue
            number, release = handed.number, handed.release
            age = self._clock() - handed.handed_at
            decoded = self._decode_handed(handed)
            del handed  # no view of a lent buffer may outlive its release
            if release is not None:
                release()
            # Counted after the frame's light: bookkeeping is no reason to light later.
            self.stats.add_taken(age)
            self.stats.add_dropped(number - last_number - 1)
            last_number = number
            if decoded:
                self._last_frame_at = self._clock()
                capture.frame_decoded(number)
                self.on_progress()

    def _decode_handed(self, handed: HandedFrame) -> bool:
        """Process one frame unless its scene is unchanged; False (logged, counted) on failure."""
        try:
            region = self.framing.cut(handed.frame)
            watch = self.scene_watch
            if watch is not None and not watch.worth_decoding(region):
                self.stats.add_unchanged()
                return True
            self._decode(self.framing.shrink(region))
            if watch is not None:
                watch.decoded(region)  # after the light: a comparison never delays a verdict
        except Exception:
            # A bad frame or a broken screen must not stop the gate. No progress is reported,
            # so a loop that fails on every frame stops the watchdog pings and gets restarted.
            self.frame_errors += 1
            if self.frame_errors % 300 == 1:
                log.exception("frame not processed (%d so far)", self.frame_errors)
            return False
        return True

    def seconds_since_frame(self) -> float:
        """How long ago the loop last finished a frame (or started): a stalled camera grows it."""
        return self._clock() - self._last_frame_at

    def process(self, frame: Frame) -> list[Scan]:
        """Decode one frame (its region, at the decode scale) and handle each new showing."""
        return self._decode(self.framing.apply(frame))

    def _decode(self, framed: Frame) -> list[Scan]:
        started = time.perf_counter()
        codes = self.decoder.decode(framed)
        decode_seconds = time.perf_counter() - started
        try:
            return [self._handle(code) for code in codes if self.debounce.is_new_showing(code.data)]
        finally:
            self.stats.add_frame(decode_seconds)  # after the light (see _decode_frames)

    def _handle(self, code: DecodedCode) -> Scan:
        parsed = parse_credential(code.data)
        verdict = self.policy.decide(parsed)
        self.indicator.show(verdict.status)  # light first: never after disk or network
        built = self.builder.build(self.journal.next_seq(), parsed, verdict)
        journaled = self.recorder.record(built)
        log.info(
            "shown %s (%s) for code %s: %s",
            verdict.status.value,
            verdict.reason.value,
            built.code_sha256[:12],
            f"journaled as seq {journaled.seq}"
            if journaled
            else f"held in memory ({self.recorder.held} held)",
        )
        self.stats.scans += 1
        event = journaled or built
        scan = Scan(
            code=code, parsed=parsed, verdict=verdict, event=event, journaled=journaled is not None
        )
        self.on_scan(scan)
        return scan
