"""Event ids as a gate makes them: UUIDv7 in 32 hex digits, unique, growing with time."""

import re
import time
import uuid

from protocol.event_ids import new_event_id
from protocol.messages import EVENT_ID_PATTERN

MS = 1_000_000  # nanoseconds


def test_an_id_is_a_uuid_version_7_of_the_protocols_shape() -> None:
    made_at = time.time_ns()
    event_id = new_event_id()

    assert re.fullmatch(EVENT_ID_PATTERN, event_id)
    assert re.fullmatch(r"[0-9a-f]{32}", event_id)
    parsed = uuid.UUID(hex=event_id)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    millis = int(event_id[:12], 16)
    assert made_at // MS <= millis <= time.time_ns() // MS


def test_the_time_in_front_is_the_given_millisecond() -> None:
    at = 1_795_000_000_123 * MS + 999_999  # the sub-millisecond part is not kept

    assert int(new_event_id(at)[:12], 16) == 1_795_000_000_123


def test_ids_made_later_sort_later() -> None:
    start = 1_795_000_000_000 * MS
    ids = [new_event_id(start + step * MS) for step in range(2000)]

    assert ids == sorted(ids)


def test_ids_of_the_same_millisecond_differ_by_their_random_bits() -> None:
    at = 1_795_000_000_000 * MS
    ids = {new_event_id(at) for _ in range(20_000)}

    assert len(ids) == 20_000
    assert {event_id[:12] for event_id in ids} == {f"{1_795_000_000_000:012x}"}


def test_a_clock_far_off_is_clamped_not_refused() -> None:
    before_1970 = new_event_id(-5 * MS)
    beyond_48_bits = new_event_id((1 << 50) * MS)

    assert before_1970.startswith("0" * 12)
    assert beyond_48_bits.startswith("f" * 12)
    for event_id in (before_1970, beyond_48_bits):
        assert uuid.UUID(hex=event_id).version == 7
