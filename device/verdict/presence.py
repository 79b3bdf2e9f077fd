"""Who is inside the site, as this gate knows it: the server's `inside` list with the gate's
own later passages laid over it (issue 15: anti-passback and capacity, offline too).

The server pushes the site's `inside` list (protocol/site_policy.py): every gate's stored
passages, and for this gate the highest seq of its own entries already in that list
(`presence_seq`). The gate keeps its own passages with a higher seq (not yet in the list: not
yet sent, not yet stored, or the list not yet pushed again) and lays them over the list in
order. So:
- a gate alone, offline, still knows who came in through it and went out through it;
- when it reconnects, its passages reach the server, the server's next list holds them, and the
  gate drops its copies: the server's list is the authority, reconciled by seq, not by time;
- passages at other gates of the site reach this gate only through the server (within a second
  or two online; not at all while either is offline: then a person who came in at gate A can
  come in again at gate B, which the server's `already_inside` reports afterwards).

Entries are the keyed hashes of the site's lists (`entry_hash(list_key, "cccd:..."/"pass:...")`);
codes that name nobody (raw codes) have no presence.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from protocol.verdicts import Direction


@dataclass(frozen=True)
class _Passage:
    seq: int
    entry: bytes
    direction: Direction


@dataclass
class _Snapshot:
    """What decisions read: replaced whole, never changed in place."""

    inside: frozenset[bytes] = frozenset()
    count: int = 0


@dataclass
class Presence:
    """The gate's view of who is inside. `update` from the MQTT thread, `record` after each
    journaled passage, `is_inside` and `count` from the frame loop (a snapshot: no lock there)."""

    _server: frozenset[bytes] = frozenset()
    _server_seq: int = -1
    _own: list[_Passage] = field(default_factory=list)
    _snapshot: _Snapshot = field(default_factory=_Snapshot)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, inside: frozenset[bytes], own_seq: int | None) -> None:
        """The server's list, holding this gate's passages up to `own_seq` (None: none yet)."""
        with self._lock:
            self._server = inside
            self._server_seq = -1 if own_seq is None else own_seq
            self._own = [p for p in self._own if p.seq > self._server_seq]
            self._rebuild()

    def record(self, seq: int, entry: bytes, direction: Direction) -> None:
        """A passage this gate let through (journaled with `seq`)."""
        with self._lock:
            if seq <= self._server_seq:
                return  # the server's list already holds it
            self._own.append(_Passage(seq, entry, direction))
            self._rebuild()

    def is_inside(self, entry: bytes) -> bool:
        return entry in self._snapshot.inside

    def count(self) -> int:
        return self._snapshot.count

    def _rebuild(self) -> None:
        inside = set(self._server)
        for passage in sorted(self._own, key=lambda p: p.seq):
            if passage.direction is Direction.IN:
                inside.add(passage.entry)
            else:
                inside.discard(passage.entry)
        self._snapshot = _Snapshot(frozenset(inside), len(inside))
