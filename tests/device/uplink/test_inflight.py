"""The in-flight window: which outbox events to publish or resend, with plain numbers for time."""

from __future__ import annotations

from collections.abc import Iterable

from device.journal.outbox import PendingEvent
from device.uplink.inflight import InFlightWindow

RESEND_AFTER = 10.0
PAGE = 100  # how many outbox events the uplink reads per wake-up


def eid(seq: int) -> str:
    """The event id of the event with this seq, in these tests."""
    return f"event-{seq:04d}"


def outbox(seqs: Iterable[int]) -> list[PendingEvent]:
    """Entries as Journal.pending() returns them, in seq order (the window never reads the wire
    bytes)."""
    return [PendingEvent(eid(seq), seq, wire=b"{}") for seq in seqs]


def ids(entries: Iterable[PendingEvent]) -> list[str]:
    return [entry.event_id for entry in entries]


def publish_due(
    window: InFlightWindow, pending: list[PendingEvent], now: float, *, limit: int = PAGE
) -> list[str]:
    """What the uplink's sender does: publish what is due (here paho's message id is the seq)."""
    chosen = window.due(pending, now, limit=limit)
    for entry in chosen:
        window.published(entry.event_id, entry.seq, mid=entry.seq, now=now)
    return ids(chosen)


def test_new_events_are_due_in_outbox_order_up_to_the_window_size() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    pending = outbox(range(1, 6))

    assert publish_due(window, pending, now=0.0) == [eid(1), eid(2), eid(3)]
    assert len(window) == 3
    assert publish_due(window, pending, now=1.0) == []  # full: events 4 and 5 wait


def test_an_acknowledged_event_frees_room_for_the_next_one() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    publish_due(window, outbox(range(1, 6)), now=0.0)

    window.settled([eid(2)])

    assert len(window) == 2
    assert publish_due(window, outbox([1, 3, 4, 5]), now=1.0) == [eid(4)]


def test_an_unacknowledged_event_is_due_again_once_resend_after_has_passed() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    pending = outbox([1])
    publish_due(window, pending, now=100.0)

    assert window.due(pending, 100.0 + RESEND_AFTER - 0.01, limit=PAGE) == []
    assert ids(window.due(pending, 100.0 + RESEND_AFTER, limit=PAGE)) == [eid(1)]


def test_a_resend_restarts_the_event_timer() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    pending = outbox([1])
    publish_due(window, pending, now=0.0)

    assert publish_due(window, pending, now=10.0) == [eid(1)]

    assert window.due(pending, 19.0, limit=PAGE) == []
    assert ids(window.due(pending, 20.0, limit=PAGE)) == [eid(1)]
    assert len(window) == 1  # a resend is the same event, not a second one in flight


def test_a_resend_forgets_the_previous_message_id() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    window.published(eid(1), 1, mid=7, now=0.0)
    window.published(eid(1), 1, mid=8, now=10.0)

    assert window.broker_answered(7) is None  # paho's answer to the old publish is not ours now
    assert window.broker_answered(8) == eid(1)


def test_broker_answer_names_our_event_once_and_ignores_other_message_ids() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    window.published(eid(1), 1, mid=7, now=0.0)

    assert window.broker_answered(99) is None  # e.g. the retained status publish
    assert window.broker_answered(7) == eid(1)
    assert window.broker_answered(7) is None
    assert len(window) == 1  # a PUBACK proves nothing about storage: still in flight


def test_after_a_connection_loss_events_the_broker_took_are_due_at_once() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    pending = outbox([1, 2])
    publish_due(window, pending, now=0.0)
    window.broker_answered(1)  # event 1's PUBACK came; event 2's did not

    window.connection_lost()
    window.reconnected(now=2.0)

    # Event 1 goes again at once (its ack may be lost); paho itself resends event 2: not yet.
    assert ids(window.due(pending, 2.0, limit=PAGE)) == [eid(1)]
    assert len(window) == 1


def test_an_event_paho_still_holds_keeps_its_message_id_across_a_connection_loss() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    window.published(eid(1), 1, mid=7, now=0.0)

    window.connection_lost()

    assert len(window) == 1
    assert window.broker_answered(7) == eid(1)  # paho's resend after the reconnect answers it


def test_a_reconnect_restarts_every_resend_timer() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    pending = outbox([1])
    publish_due(window, pending, now=0.0)

    window.connection_lost()  # no PUBACK yet: paho keeps event 1
    window.reconnected(now=8.0)

    assert window.due(pending, 10.0, limit=PAGE) == []
    assert ids(window.due(pending, 18.0, limit=PAGE)) == [eid(1)]


def test_an_event_gone_from_the_outbox_is_forgotten_and_frees_its_room() -> None:
    window = InFlightWindow(size=2, resend_after=RESEND_AFTER)
    publish_due(window, outbox([1, 2]), now=0.0)

    # Event 1 was acknowledged by a path the window did not see (e.g. before a restart).
    assert publish_due(window, outbox([2, 3]), now=1.0) == [eid(3)]
    assert len(window) == 2
    assert window.broker_answered(1) is None


def test_a_full_page_forgets_only_events_up_to_its_last_seq() -> None:
    window = InFlightWindow(size=5, resend_after=RESEND_AFTER)
    for seq in (1, 2, 3, 9):
        window.published(eid(seq), seq, mid=seq, now=0.0)

    # A page of 2 is full, so events beyond seq 3 may still be in the outbox, just not read.
    window.due(outbox([2, 3]), 1.0, limit=2)

    assert len(window) == 3  # 1 forgotten; 2 and 3 read; 9 beyond the page, kept
    assert window.broker_answered(1) is None
    assert window.broker_answered(9) == eid(9)


def test_an_empty_outbox_empties_the_window() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    publish_due(window, outbox([1, 2]), now=0.0)

    assert window.due([], 1.0, limit=PAGE) == []
    assert len(window) == 0


def test_broker_refusals_of_an_event_are_counted_in_a_row_across_reconnects() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    pending = outbox([1])
    publish_due(window, pending, now=0.0)
    assert window.broker_answered(1, refused=True) == eid(1)

    window.connection_lost()  # the refused event is forgotten for resending, not its refusals
    window.reconnected(now=1.0)
    window.published(eid(1), 1, mid=2, now=1.0)
    window.broker_answered(2, refused=True)

    assert window.refusals(eid(1)) == 2
    assert window.refusals(eid(2)) == 0


def test_a_publish_the_broker_accepts_resets_the_refusals() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    window.published(eid(1), 1, mid=1, now=0.0)
    window.broker_answered(1, refused=True)

    window.published(eid(1), 1, mid=2, now=10.0)
    window.broker_answered(2)

    assert window.refusals(eid(1)) == 0


def test_a_refusal_answering_another_message_counts_for_no_event() -> None:
    window = InFlightWindow(size=3, resend_after=RESEND_AFTER)
    window.published(eid(1), 1, mid=1, now=0.0)

    assert window.broker_answered(99, refused=True) is None  # e.g. the status publish

    assert window.refusals(eid(1)) == 0


def test_a_settled_event_frees_its_room_and_forgets_its_refusals() -> None:
    window = InFlightWindow(size=2, resend_after=RESEND_AFTER)
    publish_due(window, outbox([1, 2, 3]), now=0.0)
    window.broker_answered(1, refused=True)

    window.settled([eid(1)])  # set aside as rejected: it left the outbox

    assert window.refusals(eid(1)) == 0
    assert publish_due(window, outbox([2, 3]), now=1.0) == [eid(3)]


def test_refusals_of_events_gone_from_a_complete_outbox_are_forgotten() -> None:
    window = InFlightWindow(size=2, resend_after=RESEND_AFTER)
    publish_due(window, outbox([1]), now=0.0)
    window.broker_answered(1, refused=True)
    window.connection_lost()  # forgotten for resending; only its refusal count is left

    window.due(outbox([2]), 1.0, limit=PAGE)  # event 1 left the outbox by another path

    assert window.refusals(eid(1)) == 0
