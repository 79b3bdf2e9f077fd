"""What the collector does with a batch of messages: one transaction, then one ack per gate.

`MessageHandler.prepare` validates one message (on paho's network thread, see
server/collector/prepare.py); `MessageHandler.process` takes a batch of prepared messages (on the
writer thread) and

1. writes, in ONE transaction, the new entries (a resend is found by its event_id and not stored
   again), the dead letters of the refused messages, and the devices' status and telemetry;
2. only after the commit publishes, per gate, one `Ack` naming every event of the batch from
   that gate (stored now or before) and the gate's refused events in `rejected` (their dead
   letters are in the same commit);
3. returns, and the writer then PUBACKs the batch's messages (server/collector/writer.py).

An event whose id is stored already with other content (a `conflict`: server/store/writes.py
compares a found id's row with the event) is not stored: it is dead-lettered in the same
transaction, counted (`conflicts`) and answered as `rejected`; the same content again is a
resend, acked as before. An event naming a subject `gatescan person erase` erased is not stored
either (the store removes it in the same transaction) but acked in `event_ids`, so its gate stops
resending it; it is counted (`erased`) and keeps no dead letter. A message over its gate's
limits (`Limited`, server/collector/limits.py) is only counted (`rate_limited`, by gate, one
warning per gate per minute) and PUBACKed: no row, no ack; the gate resends it.

If the commit fails nothing is acked: the batch is rolled back, its messages are dead-lettered
as well as the database allows (events as `error`, in a second transaction), and the gates
resend their events later. Nothing a message contains can make `process` raise.

`handle(messages)` is prepare + process for a list, in the caller's thread (tests, tools).
Untrusted text (topics, details of refused payloads) reaches the log only through
protocol.text.printable, and a flood of bad messages cannot flood the log: one warning per
dead-letter reason per minute, the rest at debug; the counters and the table keep the count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from protocol.messages import REJECTION_DETAIL_MAX_CHARS, Rejection, ack_payload
from protocol.text import printable
from server.collector.failpoints import AFTER_ACK, AFTER_COMMIT, BEFORE_COMMIT, Failpoints
from server.collector.limits import GateLimiter
from server.collector.prepare import (
    AcceptedEvent,
    CollectorCounters,
    DeviceReport,
    IncomingMessage,
    Limited,
    Prepared,
    Refused,
    prepare,
)
from server.collector.sites import GateSites
from server.store.database import Store
from server.store.writes import BatchResult, Conflict, DeadLetterRecord, WriteBatch

log = logging.getLogger("gatescan.collector")

# Ids per ack message: well under Ack's limit of 10,000, and a small payload.
ACK_CHUNK = 1000
DEAD_LETTER_WARNING_INTERVAL_S = 60.0
RATE_LIMIT_WARNING_INTERVAL_S = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class MessageHandler:
    """Validate, store a batch in one commit, then ack. Never raises."""

    def __init__(
        self,
        *,
        store: Store,
        send_ack: Callable[[str, bytes], bool],
        clock: Callable[[], datetime] = utc_now,
        counters: CollectorCounters | None = None,
        failpoints: Failpoints | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        limiter: GateLimiter | None = None,
        sites: GateSites | None = None,
    ) -> None:
        """`limiter`: the per-gate limits `prepare` applies (None: no limits). `sites`: the
        registered gates' sites, checked on every event (None: not checked)."""
        self._store = store
        self._limiter = limiter
        self._sites = sites
        self._send_ack = send_ack
        self._clock = clock
        self.counters = counters or CollectorCounters()
        self._failpoints = failpoints or Failpoints()
        self._monotonic = monotonic
        self._last_warning: dict[str, float] = {}  # dead-letter reason -> when last logged
        self._last_limited_warning: dict[str, float] = {}  # gate -> when last logged

    def handle(self, messages: Sequence[IncomingMessage]) -> None:
        """Handle a batch in this thread: its messages are stored in one transaction."""
        self.process([self.prepare(message) for message in messages])

    def prepare(self, message: IncomingMessage) -> Prepared:
        """Validate one message (no I/O): what `process` will store for it."""
        try:
            sites = None if self._sites is None else self._sites.current
            return prepare(message, self._store.entry_row, self._clock, self._limiter, sites)
        except Exception as exc:  # the last line of defence: no message may stop the collector
            log.exception("unexpected error while validating a message")
            return Refused(message, "error", f"{type(exc).__name__}: {exc}")

    def process(self, batch: Sequence[Prepared]) -> None:
        """Store a batch of prepared messages in one transaction, then ack its events."""
        try:
            self._process(batch)
        except Exception:  # the last line of defence: no message may stop the collector
            log.exception("unexpected error while handling %d message(s)", len(batch))
            self.counters.errors += 1

    def _process(self, batch: Sequence[Prepared]) -> None:
        events = [item for item in batch if isinstance(item, AcceptedEvent)]
        refused = [item for item in batch if isinstance(item, Refused)]
        reports = [item for item in batch if isinstance(item, DeviceReport)]
        if len(events) + len(refused) + len(reports) < len(batch):
            self._count_limited([item for item in batch if isinstance(item, Limited)])
            if not (events or refused or reports):
                return  # nothing to store or answer: a flood's batch costs no transaction
        received_at = self._clock()
        if events:
            self.counters.received += len(events)
            log.debug("received %d events message(s)", len(events))

        def conflict_letter(conflict: Conflict) -> DeadLetterRecord:
            return _conflict_refusal(events[conflict.position], conflict).dead_letter()

        write = WriteBatch(
            entries=[event.row for event in events],
            dead_letters=[item.dead_letter() for item in refused],
            devices=[report.update for report in reports if report.update is not None],
            conflict_letter=conflict_letter,
        )
        before_commit = partial(self._failpoints.reached, BEFORE_COMMIT, len(events))
        started = self._monotonic()
        try:
            result = self._store.write_batch(write, received_at, before_commit=before_commit)
        except Exception as exc:
            # Nothing is acked: the gates keep these events and resend them.
            log.exception("could not commit a batch of %d message(s)", len(batch))
            self.counters.errors += 1
            self._dead_letter_failed_batch(events, refused, reports, exc, received_at)
            return
        self.counters.batches += 1
        self.counters.commit_latency.observe(self._monotonic() - started)
        if result.events.conflicts:
            # Not stored, and not acked as stored: kept as dead letters, answered as rejected.
            conflicts = result.events.conflicts
            refused = [*refused, *(_conflict_refusal(events[c.position], c) for c in conflicts)]
            self.counters.conflicts += len(conflicts)
            skip = {conflict.position for conflict in conflicts}
            events = [event for index, event in enumerate(events) if index not in skip]
        self._count_stored(result, refused, reports)
        self._failpoints.reached(AFTER_COMMIT, len(events))
        self._send_acks(events, refused)
        self._failpoints.reached(AFTER_ACK, len(events))

    def _count_stored(
        self, result: BatchResult, refused: list[Refused], reports: list[DeviceReport]
    ) -> None:
        stored = result.events
        if stored.ids:
            self.counters.stored += len(stored.new)
            self.counters.duplicates += stored.duplicate_count
            if stored.erased:
                # Acked in event_ids like a stored event, so the gate drops it from its outbox (a
                # rejection would keep it in the gate's never-purged rejected table) and no dead
                # letter keeps its payload.
                self.counters.erased += len(stored.erased)
                log.info(
                    "%d event(s) name an erased subject: acked, not stored", len(stored.erased)
                )
            log.debug("stored %d new, %d duplicate events", len(stored.new), stored.duplicate_count)
        for item in refused:
            self._counted_dead_letter(item.message.topic, item.reason, item.detail)
        for report in reports:
            if report.update is None:
                log.info("status of %s cleared", printable(report.message.topic))

    def _send_acks(self, events: list[AcceptedEvent], refused: list[Refused]) -> None:
        """One ack per gate: every event of the batch from it (new or already stored: each is
        committed) and its refused events (their dead letters are committed too)."""
        ids: dict[str, dict[str, None]] = {}
        for event in events:
            ids.setdefault(event.device_id, {})[event.event_id] = None
        rejected: dict[str, list[Rejection]] = {}
        for item in refused:
            if item.rejection is not None and item.device_id is not None:
                rejected.setdefault(item.device_id, []).append(item.rejection)
        self.counters.rejected += sum(len(rejections) for rejections in rejected.values())
        for device_id in {**ids, **rejected}:
            self._send_chunked(device_id, list(ids.get(device_id, ())), rejected.get(device_id, []))

    def _send_chunked(self, device_id: str, ids: list[str], rejected: list[Rejection]) -> None:
        for start in range(0, max(len(ids), len(rejected)), ACK_CHUNK):
            chunk = slice(start, start + ACK_CHUNK)
            # Every id comes from a validated Event and every rejection is a validated model:
            # the ack needs no second validation.
            if self._send_ack(device_id, ack_payload(ids[chunk], rejected[chunk])):
                self.counters.acks_sent += 1

    def _dead_letter_failed_batch(
        self,
        events: list[AcceptedEvent],
        refused: list[Refused],
        reports: list[DeviceReport],
        error: Exception,
        received_at: datetime,
    ) -> None:
        """After a failed commit, keep what can be kept, in a transaction of dead letters only.
        Events are `error` (not rejected: the gate resends them); a refused event is answered
        only if its dead letter is stored now."""
        why = f"{type(error).__name__}: {error}"
        letters = [
            *(Refused(e.message, "error", f"commit failed: {why}") for e in events),
            *refused,
            *(Refused(r.message, "error", f"commit failed: {why}") for r in reports if r.update),
        ]
        if not letters:
            return
        try:
            self._store.write_batch(
                WriteBatch(dead_letters=[letter.dead_letter() for letter in letters]), received_at
            )
        except Exception:
            log.exception("could not store the dead letters of a failed batch either")
            return
        for letter in letters:
            self._counted_dead_letter(letter.message.topic, letter.reason, letter.detail)
        self._send_acks([], refused)

    def _count_limited(self, limited: list[Limited]) -> None:
        """Messages over their gate's limits: counted and logged (one warning per gate per
        minute), nothing stored, nothing answered (the gate resends what is not acked)."""
        self.counters.rate_limited += len(limited)
        gates = self.counters.rate_limited_gates
        now = self._monotonic()
        for item in limited:
            gates[item.device_id] += 1
            last = self._last_limited_warning.get(item.device_id)
            if last is None or now - last >= RATE_LIMIT_WARNING_INTERVAL_S:
                self._last_limited_warning[item.device_id] = now
                log.warning(
                    "gate %s is over its limits: its messages are dropped unread until it slows"
                    " down (%d so far; the gate resends what is not acked)",
                    printable(item.device_id or "(no device id)"),
                    gates[item.device_id],
                )

    def _counted_dead_letter(self, topic: str, reason: str, detail: str) -> None:
        self.counters.dead_lettered += 1
        self.counters.dead_letter_reasons[reason] += 1
        self._log_dead_letter(topic, reason, detail)

    def _log_dead_letter(self, topic: str, reason: str, detail: str) -> None:
        now = self._monotonic()
        last = self._last_warning.get(reason)
        loud = last is None or now - last >= DEAD_LETTER_WARNING_INTERVAL_S
        if loud:
            self._last_warning[reason] = now
        log.log(
            logging.WARNING if loud else logging.DEBUG,
            "dead letter from %s: %s (%s)%s",
            printable(topic),
            reason,
            printable(detail),
            "; more of this reason within a minute are logged at debug level" if loud else "",
        )


def _conflict_refusal(event: AcceptedEvent, conflict: Conflict) -> Refused:
    """An event whose id is stored with other content: refused as `conflict`, answered to its
    topic's gate as rejected (the stored event stands; this one is kept as a dead letter)."""
    detail = conflict.detail
    clipped = detail[:REJECTION_DETAIL_MAX_CHARS]
    rejection = Rejection(event_id=conflict.event_id, reason="conflict", detail=clipped)
    return Refused(event.message, "conflict", detail, event.device_id, rejection)
