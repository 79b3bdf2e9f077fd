"""Which outbox events the uplink publishes now: the in-flight window, a pure bookkeeping class.

The uplink's sender thread asks `due(pending, now)` on every wake-up, with the journal's light
outbox entries (`PendingEvent`: id, seq, wire bytes; the window reads only the id and the seq),
and tells the window what happened: `published` (paho took it, with this message id),
`broker_answered` (the PUBACK came, accepting or refusing it), `settled` (the collector's ack
named it, or it was set aside as rejected), `connection_lost` and `reconnected`. The window
holds no clock, socket or journal, so its rules are tested with plain numbers for time:

- at most `size` events are in flight; the others wait their turn in outbox (seq) order;
- an event not acknowledged `resend_after` seconds after it was sent is due again;
- after a connection loss, events the broker had taken are due again at once (an ack sent while
  the gate was away is lost: the gate starts a clean session), while those paho still holds
  unanswered stay: paho resends them itself;
- a reconnect restarts every resend timer;
- an event gone from the outbox (acknowledged another way) is forgotten;
- the broker's refusals of an event are counted, in a row, across reconnects (`refusals`), so
  the uplink can set aside an event the broker will never take instead of letting it hold a
  place in the window for ever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from device.journal.outbox import PendingEvent


@dataclass
class _Sent:
    seq: int
    sent_at: float
    mid: int | None  # paho still holds this publish (no PUBACK yet); None once the broker answered


class InFlightWindow:
    """Events published and not yet acked: which to publish or resend now. Sender thread only."""

    def __init__(self, *, size: int, resend_after: float) -> None:
        self.size = size
        self.resend_after = resend_after
        self._sent: dict[str, _Sent] = {}
        self._by_mid: dict[int, str] = {}
        # Refusals in a row, by event: kept apart from _sent, which a connection loss clears.
        self._refusals: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sent)

    def due(self, pending: list[PendingEvent], now: float, *, limit: int) -> list[PendingEvent]:
        """Of the outbox's first `limit` events (seq order), those to publish now: the ones whose
        resend timer ran out, and new ones while the window has room."""
        self._forget_gone(pending, complete=len(pending) < limit)
        room = self.size - len(self._sent)
        chosen = []
        for entry in pending:
            sent = self._sent.get(entry.event_id)
            if sent is None:
                if room > 0:
                    chosen.append(entry)
                    room -= 1
            elif now - sent.sent_at >= self.resend_after:
                chosen.append(entry)
        return chosen

    def published(self, event_id: str, seq: int, mid: int, now: float) -> None:
        old = self._sent.get(event_id)
        if old is not None and old.mid is not None:
            self._by_mid.pop(old.mid, None)
        self._sent[event_id] = _Sent(seq=seq, sent_at=now, mid=mid)
        self._by_mid[mid] = event_id

    def broker_answered(self, mid: int, *, refused: bool = False) -> str | None:
        """The PUBACK for `mid` came, accepting or refusing it; returns its event id if it is
        ours. A refusal adds one to the event's `refusals`, an acceptance resets them."""
        event_id = self._by_mid.pop(mid, None)
        if event_id is None:
            return None
        sent = self._sent.get(event_id)
        if sent is not None and sent.mid == mid:
            sent.mid = None
        if refused:
            self._refusals[event_id] = self._refusals.get(event_id, 0) + 1
        else:
            self._refusals.pop(event_id, None)
        return event_id

    def refusals(self, event_id: str) -> int:
        """How many times in a row the broker refused this event."""
        return self._refusals.get(event_id, 0)

    def settled(self, event_ids: Iterable[str]) -> None:
        """These events left the outbox (acknowledged, or set aside as rejected): free them."""
        for event_id in event_ids:
            self._drop(event_id)

    def connection_lost(self) -> None:
        """Forget what the broker took: it is resent after the reconnect. paho keeps and resends
        by itself what it holds without a PUBACK, so those stay, or they would go twice."""
        for event_id in [eid for eid, sent in self._sent.items() if sent.mid is None]:
            del self._sent[event_id]

    def reconnected(self, now: float) -> None:
        for sent in self._sent.values():
            sent.sent_at = now

    def _forget_gone(self, pending: list[PendingEvent], *, complete: bool) -> None:
        # Acked by a path we did not see (another process, a restart): no longer in the outbox.
        horizon = pending[-1].seq if pending and not complete else None
        present = {entry.event_id for entry in pending}
        for event_id, sent in list(self._sent.items()):
            if event_id not in present and (horizon is None or sent.seq <= horizon):
                self._drop(event_id)
        if complete:  # the whole outbox is in view: refusals of events gone from it go too
            for event_id in [eid for eid in self._refusals if eid not in present]:
                del self._refusals[event_id]

    def _drop(self, event_id: str) -> None:
        self._refusals.pop(event_id, None)
        sent = self._sent.pop(event_id, None)
        if sent is not None and sent.mid is not None:
            self._by_mid.pop(sent.mid, None)
