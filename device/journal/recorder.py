"""Journals events in scan order, and holds in memory those the journal refuses.

The recorder takes each scan's `EventDraft` (device/verdict/events.py: the event but its seq);
the journal gives the seq as it takes the draft, so held events keep scan order and never reuse a
seq that a failed write may have used up.

When the journal cannot be written (the SD card is full, an I/O error), the gate goes on reading
and lighting: `EventRecorder` holds the drafts the journal refused in memory, in scan order, and
journals them as soon as a write succeeds again (it retries every `retry_every` seconds, also
when nobody scans). The `storage` fault is up from the first refused write until the last held
event is journaled. The hold is bounded (`MAX_HELD_EVENTS`); past it the oldest held event is
dropped (recent entries say who is inside now), logged with its event id and time, and counted.
Held events live in memory only: a power cut or a restart before the disk has room loses them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from device.journal.journal import Journal
from device.system.health import Fault, Health
from device.verdict.events import EventDraft
from protocol.messages import Event

log = logging.getLogger("gatescan.scanner")

# Held events while the journal cannot be written: drafts of about 0.7 KB each, so 5,000 take
# some 3.5 MB, and last 2.8 hours of a turnstile lane at its fastest (a code every 2 s), a day or
# more at a quiet entrance: time for a technician to free the card before anything is dropped.
MAX_HELD_EVENTS = 5000
RETRY_JOURNAL_EVERY_S = 1.0


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
        self._held: deque[EventDraft] = deque()
        self._max_held = max_held
        self._clock = clock
        self._next_retry = 0.0

    @property
    def held(self) -> int:
        return len(self._held)

    def record(self, draft: EventDraft) -> Event | None:
        """Journal `draft` after any held ones: the Event as journaled, or None when the draft is
        held in memory for now."""
        if len(self._held) >= self._max_held:
            lost = self._held.popleft()
            self.dropped += 1
            log.error(
                "journal: %d events held in memory; dropped the oldest (event %s of %s): lost",
                self._max_held,
                lost.event_id,
                lost.ts.isoformat(),
            )
        self._held.append(draft)
        journaled = self._flush()
        return journaled.get(draft.event_id)

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
        was_refused = Fault.STORAGE in self.health.faults
        journaled: dict[str, Event] = {}
        while self._held:
            try:
                event = self._journal(self._held[0])
            except OSError as exc:  # JournalError: disk full, I/O error
                if not was_refused:
                    log.error("journal: cannot write (%s); holding events in memory", exc)
                self.health.set_fault(Fault.STORAGE)
                self._next_retry = self._clock() + self.retry_every
                break
            if event is not None:
                journaled[event.event_id] = event
            self._held.popleft()
        if journaled:
            self.notify_uplink()
        if not self._held:
            if was_refused:
                log.info("journal: writable again; %d held events journaled", len(journaled))
            self.health.clear_fault(Fault.STORAGE)
        return journaled

    def _journal(self, draft: EventDraft) -> Event | None:
        """The Event as journaled, or None if the journal can never take it. Raises OSError."""
        try:
            return self.journal.record(draft)
        except ValueError as exc:  # not a valid event, or the journal is closed
            self.dropped += 1
            log.error("journal: refused event %s for good: %s", draft.event_id, exc)
            return None
