"""The check-in page's rate limits (issue 18), in memory, per process (as the login throttle's
address limit is: several `gatescan web` processes each count their own).

- per client address: CheckinLimits.per_address check-in attempts (every POST, accepted or not)
  per window; many phones share one public address behind a carrier's NAT, so this is loose;
- per phone number, location and direction: per_phone recorded check-ins per window (a second
  tap of "Check in" is not a second entry; checking out right after is allowed).

Keys are held as given: the route passes a keyed digest of the phone (never the number).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 100_000  # past this, the oldest windows are forgotten (a flood of new addresses)
# The defaults, one number each: WebSettings' `checkin_*` and server.toml's [checkin] start from
# these, and the alerts' `checkins_per_location_day` (server/alerts/rules.py) from DAILY_CAP.
PER_ADDRESS_PER_MIN = 10
PER_PHONE_PER_MIN = 1
DAILY_CAP = 2000


@dataclass
class SlidingWindow:
    """At most `limit` events per `window_s` seconds per key."""

    limit: int
    window_s: float
    clock: Callable[[], float]
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        times = self._seen.get(key)
        if times is None:
            if len(self._seen) >= MAX_KEYS:
                self._forget(now)
            times = self._seen[key] = deque()
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def retry_after(self, key: str) -> int:
        """0 when `key` may go on now, else the seconds until it may."""
        times = self._recent(key)
        if len(times) < self.limit:
            return 0
        return max(1, math.ceil(self.window_s - (self.clock() - times[0])))

    def count(self, key: str) -> None:
        self._recent(key).append(self.clock())

    def _forget(self, now: float) -> None:
        for key in list(self._seen):
            times = self._seen[key]
            if not times or now - times[-1] >= self.window_s:
                del self._seen[key]
        while len(self._seen) >= MAX_KEYS:  # all live: the oldest keys go first
            del self._seen[next(iter(self._seen))]


@dataclass(frozen=True)
class CheckinLimits:
    """The page's limits (WebSettings' `checkin_*`, the CLI's defaults)."""

    per_address: int = PER_ADDRESS_PER_MIN  # check-in POSTs per client address per window
    per_phone: int = PER_PHONE_PER_MIN  # recorded check-ins per phone, location and direction
    window_s: float = 60.0
    daily_cap: int = DAILY_CAP  # check-ins (in and out) per location per local day
