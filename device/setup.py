"""Setup mode: a gate with no broker and no identity waits for its enrolment card.

`SetupMode.run` reads frames as the scanner does (a capture thread, the newest frame decoded in
the caller's), and also reads the enrolment file beside the config (`gatescan provision` writes
it), until it has an enrolment code (protocol/enrolment.py). It then exchanges the code for an
identity in a thread of its own (device/enrolment/client.py) while frames go on being read and
the systemd watchdog pinged, keeps the identity (device/enrolment/identity.py) and returns it.

The light says where it is: `setup` (waiting), `enrolling`, `enrolment_retry` (the server was busy
or unreachable: the same code is tried again after a backoff of 2 s doubling to 60 s, unless
another card is shown) and `enrolment_refused` (this card will never work: another is needed);
while the camera fails, the `fault` pattern instead. A code that is not an enrolment code gets
the `denied` flash and is not recorded: a gate in setup mode has no journal. The token is a
secret: no log line here holds a code's text.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.camera.source import FrameSource
from device.decode.base import Decoder
from device.enrolment.client import EnrolmentFailed
from device.enrolment.identity import IdentityError, StoredIdentity
from device.frames.capture import FrameCapture
from device.frames.handoff import LatestFrame
from device.indicator.base import Indicator, IndicatorState
from device.system.health import Health
from protocol.enrolment import (
    EnrolmentCode,
    EnrolmentCodeError,
    EnrolmentGrant,
    is_enrolment_code,
    parse_enrolment_code,
)
from protocol.verdicts import Reason, VerdictStatus

log = logging.getLogger("gatescan.setup")

FIRST_RETRY_S = 2.0
MAX_RETRY_S = 60.0
FILE_CHECK_S = 5.0  # the enrolment file is looked at this often (it may come after boot)
SHOWING_S = 3.0  # the same code seen again within this is the same showing
WAKE_S = 0.1
MAX_CODE_FILE_BYTES = 4096
MAX_SEEN = 1000
STORE_RETRY_S = 1.0


@dataclass(frozen=True)
class Enrolled:
    """What setup mode ended with, and when (monotonic seconds) each step happened."""

    identity: StoredIdentity
    code_read_at: float
    stored_at: float


@dataclass
class _Pending:
    code: EnrolmentCode
    digest: str
    due: float
    backoff: float


class SetupMode:
    def __init__(
        self,
        *,
        source: FrameSource,
        decoder: Decoder,
        indicator: Indicator,
        health: Health,
        exchange: Callable[[EnrolmentCode], EnrolmentGrant],
        keep: Callable[[EnrolmentGrant], StoredIdentity],
        on_progress: Callable[[], object] = lambda: None,
        code_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        first_retry_s: float = FIRST_RETRY_S,
        max_retry_s: float = MAX_RETRY_S,
    ) -> None:
        self.source = source
        self.decoder = decoder
        self.indicator = indicator
        self.health = health
        self.exchange = exchange
        self.keep = keep
        self.on_progress = on_progress
        self.code_file = code_file
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self._clock = clock
        self._refused: set[str] = set()  # digests of codes that will never work
        self._seen: dict[str, float] = {}  # digest -> last seen, for the showing window
        self._pending: _Pending | None = None  # a code to try (again) when due
        self._attempt: threading.Thread | None = None
        self._outcome: EnrolmentGrant | EnrolmentFailed | None = None
        self._attempt_code: _Pending | None = None
        self._unstored: EnrolmentGrant | None = None  # granted, the disk refused it so far
        self._store_due = 0.0
        self._code_read_at: float | None = None
        self._file_checked_at: float | None = None
        self._state = IndicatorState.SETUP
        health.watch(lambda _: self._show(self._state))  # a camera fault shows over setup

    def _show(self, state: IndicatorState) -> None:
        """The setup state; the fault pattern instead while the camera fails."""
        self._state = state
        self.indicator.set_state(IndicatorState.FAULT if self.health.faults else state)

    def close(self) -> None:
        """Release the camera and the pins (the agent opens its own)."""
        try:
            self.source.close()
        finally:
            self.indicator.close()

    def run(self, stop: threading.Event) -> Enrolled | None:
        """Wait for a card and enrol; None when `stop` was set first."""
        self._show(IndicatorState.SETUP)
        log.warning("setup mode: no broker and no identity; show this gate its enrolment card")
        capture_stop = threading.Event()
        handoff = LatestFrame(self._clock)
        capture = FrameCapture(self.source, handoff, self.health)
        thread = threading.Thread(
            target=capture.run, args=(capture_stop,), name="capture", daemon=True
        )
        thread.start()
        try:
            while not stop.is_set():
                enrolled = self._step(handoff, capture)
                if enrolled is not None:
                    return enrolled
            return None
        finally:
            capture_stop.set()
            thread.join(timeout=6.0)
            handoff.discard()

    def _step(self, handoff: LatestFrame, capture: FrameCapture) -> Enrolled | None:
        self._read_code_file()
        enrolled = self._settle()
        if enrolled is not None:
            return enrolled
        self._try_when_due()
        handed = handoff.take(timeout=WAKE_S)
        if handed is None:
            return None
        number, release = handed.number, handed.release
        try:
            codes = self.decoder.decode(handed.frame)
        except Exception:
            log.exception("setup mode: frame not decoded")
            codes = []
        finally:
            del handed  # no view of a lent buffer may outlive its release
            if release is not None:
                release()
        capture.frame_decoded(number)
        self.on_progress()
        for code in codes:
            self.consider(code.text, "camera")
        return None

    # -- codes -------------------------------------------------------------------------------

    def consider(self, text: str, where: str) -> None:
        """A code read from the camera or the file."""
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
        now = self._clock()
        new_showing = now - self._seen.get(digest, -SHOWING_S - 1) > SHOWING_S
        if len(self._seen) > MAX_SEEN:  # a stream of distinct codes must not grow memory
            self._seen = {seen: at for seen, at in self._seen.items() if now - at <= SHOWING_S}
        self._seen[digest] = now
        if not new_showing:
            return
        if not is_enrolment_code(text):
            self.indicator.show(VerdictStatus.DENIED, Reason.UNKNOWN_FORMAT)
            log.info("setup mode: a code that is not an enrolment card was shown; not recorded")
            return
        if digest in self._refused:
            self._show(IndicatorState.ENROLMENT_REFUSED)
            # The file is read again every few seconds: said once, at its refusal.
            level = logging.DEBUG if where.startswith("file") else logging.WARNING
            log.log(level, "setup mode: this enrolment card was refused already; show another")
            return
        if self._attempt is not None or (self._pending and self._pending.digest == digest):
            return  # already being tried, or waiting for its retry
        try:
            code = parse_enrolment_code(text)
        except EnrolmentCodeError as error:
            self._refused.add(digest)
            self._show(IndicatorState.ENROLMENT_REFUSED)
            log.error("enrolment card refused (%s): %s; show another", where, error)
            return
        self._code_read_at = now
        log.info("enrolment card read (%s): asking %s", where, code.server)
        self._pending = _Pending(code, digest, now, self.first_retry_s)

    def _read_code_file(self) -> None:
        if self.code_file is None:
            return
        now = self._clock()
        if self._file_checked_at is not None and now - self._file_checked_at < FILE_CHECK_S:
            return
        self._file_checked_at = now
        try:
            with self.code_file.open("rb") as file:
                data = file.read(MAX_CODE_FILE_BYTES)
        except FileNotFoundError:
            return
        except OSError as error:
            log.error("enrolment file %s: %s", self.code_file, error.strerror)
            return
        text = data.decode("utf-8", "replace").strip()
        if text:
            self.consider(text, f"file {self.code_file.name}")

    # -- the exchange ------------------------------------------------------------------------

    def _try_when_due(self) -> None:
        pending = self._pending
        if pending is None or self._attempt is not None or self._clock() < pending.due:
            return
        self._pending = None
        self._attempt_code = pending
        self._outcome = None
        self._show(IndicatorState.ENROLLING)
        self._attempt = threading.Thread(
            target=self._attempt_exchange, args=(pending.code,), name="enrolment", daemon=True
        )
        self._attempt.start()

    def _attempt_exchange(self, code: EnrolmentCode) -> None:
        try:
            self._outcome = self.exchange(code)
        except EnrolmentFailed as failure:
            self._outcome = failure
        except Exception as error:  # a bug must not end setup mode: the card is tried again
            log.exception("enrolment: unexpected failure")
            self._outcome = EnrolmentFailed("network", f"unexpected {type(error).__name__}")

    def _settle(self) -> Enrolled | None:
        """Act on a finished exchange; the identity once it is stored."""
        if self._unstored is not None:
            if self._clock() < self._store_due:
                return None
            return self._store(self._unstored)
        attempt = self._attempt
        if attempt is None or attempt.is_alive():
            return None
        self._attempt = None
        outcome, tried = self._outcome, self._attempt_code
        assert tried is not None
        if isinstance(outcome, EnrolmentGrant):
            log.info(
                "enrolment granted: this gate is %s of site %r", outcome.device_id, outcome.site_id
            )
            return self._store(outcome)
        assert outcome is not None
        if outcome.retry:
            delay = tried.backoff
            log.warning(
                "enrolment not done: %s (%s); trying again in %.0f s",
                outcome.reason,
                outcome.message,
                delay,
            )
            tried.due = self._clock() + delay
            tried.backoff = min(delay * 2, self.max_retry_s)
            self._pending = tried
            self._show(IndicatorState.ENROLMENT_RETRY)
            return None
        self._refused.add(tried.digest)
        self._show(IndicatorState.ENROLMENT_REFUSED)
        log.error(
            "enrolment refused: %s (%s); this card will not work, show another",
            outcome.reason,
            outcome.message,
        )
        return None

    def _store(self, grant: EnrolmentGrant) -> Enrolled | None:
        try:
            identity = self.keep(grant)
        except IdentityError as error:
            # The token is spent: the grant is all there is. Keep it in memory and retry.
            if self._unstored is None:
                log.error("enrolment: %s; retrying every %.0f s", error, STORE_RETRY_S)
            self._unstored = grant
            self._store_due = self._clock() + STORE_RETRY_S
            self._show(IndicatorState.ENROLMENT_RETRY)
            return None
        self._unstored = None
        stored_at = self._clock()
        log.info("enrolment: identity stored in %s", identity.ca_file.parent)
        return Enrolled(identity, self._code_read_at or stored_at, stored_at)
