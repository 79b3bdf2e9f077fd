"""New event ids: unique by their random bits, ordered by the time they were made.

An id is a UUID version 7 (RFC 9562) written as 32 lowercase hex digits: 48 bits of Unix time in
milliseconds, then the version and variant, then 74 random bits. Uniqueness never rests on the
clock: two ids made in the same millisecond (or after a clock jumped back onto an earlier one)
differ in 74 random bits, as many as a random UUID's 122 bits make a collision unthinkable.

Why the time in front: the collector stores every event under its id in a B-tree index. Random
ids land all over it, so each commit dirties a page of the index for nearly every event and
writes it to the database's log; ids that grow with time land at the index's end, a few pages per
commit (bench/store_bench.py at 500 gates: SQLite's CPU per stored event 27 us with random ids,
10 us with these). A gate whose clock is wrong still makes ids that grow within its run; they are
only filed at another place in the index. The collector accepts any id of the protocol's shape
(older gates send random ones); this is how a gatescan gate makes them.
"""

from __future__ import annotations

import os
import time

_TIME_BITS = 48
_TIME_MASK = (1 << _TIME_BITS) - 1
_VERSION = 0x7
_VARIANT = 0b10


def new_event_id(now_ns: int | None = None) -> str:
    """A fresh event id (32 hex digits, UUIDv7 layout) for this moment, or for `now_ns` (Unix
    time in nanoseconds; a time outside 1970..10889 is clamped, never refused)."""
    ns = time.time_ns() if now_ns is None else now_ns
    millis = min(max(ns // 1_000_000, 0), _TIME_MASK)
    random = int.from_bytes(os.urandom(10))  # 80 bits, of which 74 are kept
    rand_a = random >> 68  # 12 bits
    rand_b = random & ((1 << 62) - 1)  # 62 bits
    value = (millis << 80) | (_VERSION << 76) | (rand_a << 64) | (_VARIANT << 62) | rand_b
    return f"{value:032x}"
