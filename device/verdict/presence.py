"""Who is inside the site, as this gate knows it: the server's `inside` list with the gate's
own later passages laid over it (issue 15: anti-passback and capacity, offline too).

The server pushes the site's `inside` list (protocol/site_policy.py): every gate's stored
passages of the day, and for this gate the highest seq of its own entries already in that list
(`presence_seq`). The gate keeps its own passages with a higher seq (not yet in the list: not
yet sent, not yet stored, or the list not yet pushed again) and lays them over the list in seq
order. So:
- a gate alone, offline, still knows who came in through it and went out through it (its own
  passages of the day come back from its journal when it starts: device/app.py);
- when it reconnects, its passages reach the server, the server's next list holds them, and the
  gate drops its copies: the server's list is the authority, reconciled by seq, not by clocks;
- passages at other gates of the site reach this gate only through the server (a second or two
  online; not at all while either is offline: a person who came in at gate A may then come in
  again at gate B, and the server's entries show both);
- the list's day starts at the site's midnight (`presence_since`): the gate drops its own
  passages from before it, as the list did.

Entries are the keyed hashes of the site's lists (`entry_hash(list_key, "cccd:..."/"pass:...")`);
codes that name nobody (raw codes) have no presence. Reads (`is_inside`, `count`) come from the
frame loop and take a snapshot without a lock; `update` (the MQTT thread) and `record` (after a
passage is journaled) replace it under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from protocol.verdicts import Direction

Lookup = Callable[[bytes], bool]


def _nobody(_entry: bytes) -> bool:
    return False


@dataclass(frozen=True)
class _Passage:
    seq: int
    entry: bytes
    direction: Direction
    ts: datetime


@dataclass(frozen=True)
class _View:
    """What decisions read: replaced whole, never changed in place."""

    server: Lookup
    overrides: dict[bytes, bool]  # entry -> inside, from this gate's own later passages
    count: int


class Presence:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: Lookup = _nobody
        self._server_count = 0
        self._server_seq = -1
        self._since: datetime | None = None
        self._own: list[_Passage] = []
        self._view = _View(_nobody, {}, 0)

    def update(
        self, inside: Lookup, count: int, own_seq: int | None, since: datetime | None
    ) -> None:
        """The server's list (`inside`: whether it holds an entry; `count`: how many it holds),
        holding this gate's passages up to `own_seq` (None: none of them), for the day that
        began at `since`."""
        with self._lock:
            self._server, self._server_count = inside, count
            self._server_seq = -1 if own_seq is None else own_seq
            self._since = since
            self._own = [p for p in self._own if self._keeps(p)]
            self._rebuild()

    def record(self, seq: int, entry: bytes, direction: Direction, ts: datetime) -> None:
        """A passage this gate let through, journaled with `seq`."""
        with self._lock:
            passage = _Passage(seq, entry, direction, ts)
            if self._keeps(passage):
                self._own.append(passage)
                self._rebuild()

    def is_inside(self, entry: bytes) -> bool:
        view = self._view
        inside = view.overrides.get(entry)
        return view.server(entry) if inside is None else inside

    def count(self) -> int:
        return self._view.count

    def _keeps(self, passage: _Passage) -> bool:
        if passage.seq <= self._server_seq:
            return False  # the server's list already holds it
        return self._since is None or passage.ts >= self._since

    def _rebuild(self) -> None:
        overrides: dict[bytes, bool] = {}
        for passage in sorted(self._own, key=lambda p: p.seq):
            overrides[passage.entry] = passage.direction is Direction.IN
        count = self._server_count
        for entry, inside in overrides.items():
            count += int(inside) - int(self._server(entry))
        self._view = _View(self._server, overrides, max(0, count))
