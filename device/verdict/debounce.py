"""The repeat window: a code seen again soon after is the same showing, not a new entry.

A person holds a card in front of the camera for a second or two; the camera reads it on dozens of
frames. A code counts as a new showing only when it has been out of sight for longer than the
window, so holding it still for a minute is still one entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Debounce:
    def __init__(self, window: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        if window < 0:
            raise ValueError("the repeat window cannot be negative")
        self.window = window
        self._clock = clock
        self._last_seen: dict[bytes, float] = {}

    def is_new_showing(self, code: bytes) -> bool:
        """Note that `code` is in view now; True if this starts a new showing."""
        now = self._clock()
        self._forget_older_than(now - self.window)
        new = code not in self._last_seen
        self._last_seen[code] = now
        return new

    def _forget_older_than(self, cutoff: float) -> None:
        stale = [code for code, seen in self._last_seen.items() if seen < cutoff]
        for code in stale:
            del self._last_seen[code]
