"""A code in view that no decoder reads: the light asks for it to be shown again (issue 15).

A damaged card, a code printed too small or held too close, a phone screen at full glare: the
decoder finds the symbol (zxing-cpp outlines it) but cannot read it. A code coming into view is
often unreadable for a few frames before it reads, so the light asks only once a symbol has
stayed unreadable for `after_s` (1 s) with nothing read meanwhile, and then at most once every
`every_s` (4 s) while it stays. Nothing is recorded: there is no code to record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

UNREADABLE_AFTER_S = 1.0
ASK_AGAIN_EVERY_S = 4.0


class UnreadableWatch:
    def __init__(
        self,
        after_s: float = UNREADABLE_AFTER_S,
        every_s: float = ASK_AGAIN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._after_s = after_s
        self._every_s = every_s
        self._clock = clock
        self._since: float | None = None  # when the unread symbol was first seen
        self._asked: float | None = None

    def frame(self, *, unreadable: bool, read: bool) -> bool:
        """One decoded frame: a symbol found but not read (`unreadable`), a code read (`read`).
        True when the light should ask for the code again now."""
        now = self._clock()
        if read or not unreadable:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        if now - self._since < self._after_s:
            return False
        if self._asked is not None and now - self._asked < self._every_s:
            return False
        self._asked = now
        return True
