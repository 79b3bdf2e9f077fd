"""The collector's writer thread: batches of messages, one commit each, then acks and PUBACKs.

paho's network thread validates each message (MessageHandler.prepare) and puts it, with its MQTT
packet id, into a bounded queue. The writer takes everything waiting (up to `max_batch`
messages, after gathering for at most `gather_s` once the first one is in), has the handler
store the batch in one transaction and ack each gate once, and only then PUBACKs the batch's
messages in the order they came. So the order of every message's life is: received, validated,
committed, acked to its gate, PUBACKed to the broker; a collector killed anywhere before the
PUBACK gets the message again from the broker (a persistent session), and the store keeps each
event_id once.

When the queue is full, `put` blocks paho's thread: it stops reading the socket, the broker stops
sending (it has at most its receive window in flight to us), and the back-pressure reaches the
broker instead of the collector's memory. Nothing is ever dropped here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

from server.collector.batch import MessageHandler
from server.collector.failpoints import Failpoints
from server.collector.prepare import AcceptedEvent, Prepared

log = logging.getLogger("gatescan.collector")

MAX_BATCH = 2000  # messages per transaction
GATHER_S = 0.002  # once a message is waiting, how long to wait for more before committing
QUEUE_CAPACITY = 4000  # messages validated and not yet taken by the writer


class Delivery(NamedTuple):
    """A prepared message and what is needed to PUBACK it on the connection it came on."""

    prepared: Prepared
    mid: int
    qos: int
    connection: int  # which connection (a counter) brought it


class BatchQueue:
    """A bounded FIFO between one producer and one consumer that takes batches."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[Delivery] = deque()
        self._capacity = capacity
        self._changed = threading.Condition()
        self._closed = False

    def put(self, item: Delivery) -> None:
        """Append; blocks while the queue is full (back-pressure), never drops."""
        with self._changed:
            while len(self._items) >= self._capacity and not self._closed:
                self._changed.wait()
            self._items.append(item)
            if len(self._items) == 1:
                self._changed.notify_all()  # the writer may be waiting for a first message

    def take(
        self, max_items: int, gather_s: float, max_events: int | None, wait_s: float
    ) -> list[Delivery]:
        """Up to `max_items` (and at most `max_events` accepted events), oldest first; waits up
        to `wait_s` for a first one, then up to `gather_s` for a fuller batch. [] on timeout."""
        with self._changed:
            if not self._items and not self._closed:
                self._changed.wait(wait_s)
            if gather_s > 0 and 0 < len(self._items) < max_items and not self._closed:
                deadline = time.monotonic() + gather_s
                while len(self._items) < max_items and (left := deadline - time.monotonic()) > 0:
                    self._changed.wait(left)
            batch = self._pop(max_items, max_events)
            if batch:
                self._changed.notify_all()  # room again for a blocked put
            return batch

    def _pop(self, max_items: int, max_events: int | None) -> list[Delivery]:
        batch: list[Delivery] = []
        events = 0
        items = self._items
        while items and len(batch) < max_items:
            if isinstance(items[0].prepared, AcceptedEvent):
                if max_events is not None and events >= max_events:
                    break
                events += 1
            batch.append(items.popleft())
        return batch

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed


class IngestWriter:
    """The thread that commits batches; `submit` is called from paho's network thread."""

    def __init__(
        self,
        *,
        handler: MessageHandler,
        puback: Callable[[Sequence[Delivery]], None],
        one_wakeup: Callable[[], AbstractContextManager[None]] = nullcontext,
        failpoints: Failpoints | None = None,
        max_batch: int = MAX_BATCH,
        gather_s: float = GATHER_S,
        capacity: int = QUEUE_CAPACITY,
    ) -> None:
        self._handler = handler
        self._puback = puback
        self._one_wakeup = one_wakeup
        self._failpoints = failpoints or Failpoints()
        self._max_batch = max_batch
        self._gather_s = gather_s
        self._queue = BatchQueue(capacity)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
            self._thread.start()

    def submit(self, delivery: Delivery) -> None:
        """Queue a validated message for the next batch (blocks while the queue is full)."""
        self._queue.put(delivery)

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then end the thread (a writer runs once)."""
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the ingest writer did not finish within %.0f s", timeout)
            self._thread = None

    def queued(self) -> int:
        return len(self._queue)

    def _run(self) -> None:
        while True:
            batch = self._queue.take(
                self._max_batch, self._gather_s, self._events_allowed(), wait_s=1.0
            )
            if not batch:
                if self._queue.closed:
                    return
                continue
            try:
                # The batch's acks and PUBACKs wake the network thread once, not once each.
                with self._one_wakeup():
                    self._handler.process([delivery.prepared for delivery in batch])
                    self._puback(batch)  # after the commit and the acks: the broker may forget
            except Exception:
                # Not PUBACKed: the broker delivers them again on the next connection. The
                # writer itself must live on, or the network thread would block for ever.
                log.exception("could not finish a batch of %d message(s)", len(batch))

    def _events_allowed(self) -> int | None:
        """With a failpoint armed, end the batch so that the message it kills at is alone in
        its batch (see server/collector/failpoints.py); else no limit beyond max_batch."""
        until_kill = self._failpoints.messages_until_kill()
        if until_kill is None:
            return None
        return max(1, until_kill - 1)
