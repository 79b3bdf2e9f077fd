"""The frame loop: source, decoder, debounce, credential, verdict, light, journal, send.

`Scanner.run` runs the loop as two threads joined by a one-slot handoff (device/frames/): a
capture thread reads the camera and always overwrites the slot with its newest frame; the
caller's thread takes the newest frame and decodes it, so a slow decode drops stale frames (they
are counted) instead of answering old ones. `Scanner.process` is one frame of the decode side.

Order matters: the indicator is told first (it returns at once), the journal write is durable next,
and the uplink is only nudged (it sends from its own thread). Nothing here waits on the network.

Each showing's event is built as an `EventDraft` (all but its seq) and handed to the
`EventRecorder` (device/journal/recorder.py), which journals it: the journal gives the seq. When
the journal cannot be written (the SD card is full, an I/O error), the gate goes on reading and
lighting: the recorder holds those drafts in memory.

Each scan is logged at INFO (verdict, reason, a short digest of the code, and whether it was
journaled), so what the gate showed can be followed from outside the process. After every frame
decoded the loop calls `on_progress`: the systemd watchdog is pinged only from there, so a camera
that fails or hangs, or a decode that fails on every frame, stops the pings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from device.camera.source import Frame, FrameSource
from device.decode.base import DecodedCode, Decoder, SaysWhatItSaw
from device.frames.capture import FrameCapture
from device.frames.framing import Framing
from device.frames.handoff import HandedFrame, LatestFrame
from device.frames.scene import SceneWatch
from device.frames.stats import ScanStats
from device.frames.unreadable import UnreadableWatch
from device.indicator.base import Indicator
from device.journal.journal import Journal
from device.journal.recorder import EventRecorder
from device.system.failpoints import DROP_AFTER_LIGHT, Failpoints
from device.system.health import Health
from device.verdict.credentials import ParseResult, parse_credential
from device.verdict.debounce import Debounce
from device.verdict.events import EventBuilder, EventDraft
from device.verdict.policy import Policy, Verdict
from protocol.enrolment import CODE_PREFIX
from protocol.messages import Event
from protocol.verdicts import Reason, VerdictStatus

log = logging.getLogger("gatescan.scanner")

# Without frames (a failed camera) the decode thread still wakes this often: to retry the journal
# and to notice the stop event, which a frame's arrival cannot signal then.
IDLE_WAKE_S = 0.1
# How long stopping waits for the capture thread, which may be inside a camera read (each read
# gives up within a few seconds: picamera2 2 s, a network stream 5 s).
CAPTURE_JOIN_S = 6.0


@dataclass(frozen=True)
class ScanParts:
    """What a config changed live replaces in the loop (device/live_config.py): made on another
    thread, handed over with `Scanner.change_parts`, taken by the loop between two frames."""

    decoder: Decoder
    policy: Policy
    builder: EventBuilder
    framing: Framing
    repeat_window: float


@dataclass(frozen=True)
class Scan:
    """One showing of a code and what the gate did about it.

    `event` is the Event as journaled. `journaled` False: the journal refused the write and the
    event is held in memory (see EventRecorder); `event` is then its draft, which has no seq yet:
    the journal gives it one when it takes the draft.
    """

    code: DecodedCode
    parsed: ParseResult
    verdict: Verdict
    event: Event | EventDraft
    journaled: bool


class Scanner:
    """The frame loop. `notify_uplink` is handed to the default EventRecorder (a recorder passed
    in brings its own); `framing` is the region of interest and decode scale; `scene_watch`
    spares the decoder unchanged frames in `run` (None: decode every frame); `failpoints` plant
    bugs for the fault tests' mutation checks (device/system/failpoints.py; inert by default)."""

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
        failpoints: Failpoints | None = None,
        unreadable: UnreadableWatch | None = None,
        clock: Callable[[], float] = time.monotonic,
        frame_tap: Callable[[Frame, int], None] | None = None,
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
        self.failpoints = failpoints or Failpoints()
        self.unreadable = unreadable or UnreadableWatch(clock=clock)
        # The ensemble says what it saw (read rate, "show it again"); other decoders cannot.
        self._saw = decoder if isinstance(decoder, SaysWhatItSaw) else None
        self._clock = clock
        # The preview's tap (device/preview/tap.py): each frame and the codes read in it, before
        # its buffer goes back to the camera; a no-op unless a preview session is alive.
        self.frame_tap = frame_tap
        self._codes_in_frame = 0  # read in the last frame decoded (kept over unchanged frames)
        self._last_frame_at = clock()
        self.frame_errors = 0
        self.handoff = LatestFrame(clock)
        """The slot between the capture and decode threads (a fresh one for every run)."""
        self._next_parts: ScanParts | None = None
        self._parts_lock = threading.Lock()

    def change_parts(self, parts: ScanParts) -> None:
        """Use `parts` from the next frame on (any thread): a frame is decided whole with the
        old parts or the new, never a mix. The repeat window keeps the codes it has seen."""
        with self._parts_lock:
            self._next_parts = parts

    def _take_next_parts(self) -> None:
        if self._next_parts is None:  # the frame loop's usual case: no lock taken
            return
        with self._parts_lock:
            parts, self._next_parts = self._next_parts, None
        if parts is None:
            return
        self.decoder = parts.decoder
        self._saw = parts.decoder if isinstance(parts.decoder, SaysWhatItSaw) else None
        self.policy = parts.policy
        self.builder = parts.builder
        self.framing = parts.framing
        self.debounce.window = parts.repeat_window

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
        self._take_next_parts()
        try:
            region = self.framing.cut(handed.frame)
            watch = self.scene_watch
            if watch is not None and not watch.worth_decoding(region):
                self.stats.add_unchanged()
            else:
                self._decode(self.framing.shrink(region))
                if watch is not None:
                    watch.decoded(region)  # after the light: a comparison never delays a verdict
            if self.frame_tap is not None:
                self.frame_tap(handed.frame, self._codes_in_frame)
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
        self._take_next_parts()
        return self._decode(self.framing.apply(frame))

    def _decode(self, framed: Frame) -> list[Scan]:
        started = time.perf_counter()
        codes = self.decoder.decode(framed)
        decode_seconds = time.perf_counter() - started
        self._codes_in_frame = len(codes)
        try:
            new = [code for code in codes if self.debounce.is_new_showing(code.data)]
            return [scan for scan in map(self._handle, new) if scan is not None]
        finally:
            self.stats.add_frame(decode_seconds)  # after the light (see _decode_frames)
            if self._saw is not None:
                read = bool(codes)
                self.stats.add_code_frame(likely=self._saw.code_likely_in_last(), read=read)
                self._ask_again_if_unreadable(self._saw, read)

    def _ask_again_if_unreadable(self, saw: SaysWhatItSaw, read: bool) -> None:
        """A symbol in view for a second that nothing reads: the light's amber "show it again"
        (the rescan family, as for a damaged card in log mode); nothing is recorded."""
        unreadable = not read and saw.unreadable_in_last()
        if self.unreadable.frame(unreadable=unreadable, read=read):
            self.indicator.show(VerdictStatus.RECORDED, Reason.INVALID)
            log.info("a code in view for a second could not be read: asked to show it again")

    def _handle(self, code: DecodedCode) -> Scan | None:
        if is_enrolment_card(code.data):
            # Not a person's credential, and its token is a secret: no event, no journal line.
            self.indicator.show(VerdictStatus.DENIED, Reason.NOT_ALLOWED)
            log.warning("an enrolment card was shown to a running gate: refused, not recorded")
            return None
        parsed = parse_credential(code.data)
        verdict = self.policy.decide(parsed)
        # Light first, never after disk or network; the reason picks the family (a damaged code
        # recorded in log mode asks to be shown again).
        self.indicator.show(verdict.status, verdict.reason)
        draft = self.builder.build(parsed, verdict)
        if self.failpoints.reached(DROP_AFTER_LIGHT):  # a planted bug (tests): lit, then forgotten
            return Scan(code=code, parsed=parsed, verdict=verdict, event=draft, journaled=False)
        journaled = self.recorder.record(draft)
        log.info(
            "shown %s (%s) for code %s: %s",
            verdict.status.value,
            verdict.reason.value,
            draft.code_sha256[:12],
            f"journaled as seq {journaled.seq}"
            if journaled
            else f"held in memory ({self.recorder.held} held)",
        )
        self.stats.scans += 1
        event = journaled or draft
        scan = Scan(
            code=code, parsed=parsed, verdict=verdict, event=event, journaled=journaled is not None
        )
        self.on_scan(scan)
        return scan


_ENROLMENT_PREFIX = CODE_PREFIX.encode("ascii")


def is_enrolment_card(data: bytes) -> bool:
    """protocol.enrolment's is_enrolment_code on the raw bytes, cheap enough for the hot path."""
    return data[:64].lstrip().upper().startswith(_ENROLMENT_PREFIX)
