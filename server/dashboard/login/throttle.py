"""The login throttle: a delay per user name that grows with its failures, and a limit per client
address in a sliding window. Both answer "not yet" (429 with Retry-After): nothing is ever locked.

Per name, the first `free_tries` failures cost nothing; after them each further attempt waits
`first_delay_s` after the latest failure was answered, doubled after every further failure, at
most `max_delay_s` (by default 1, 2, 4, 8, 16, then 30 s). So a guesser gets about one try per
30 s at a name, and the real user, right password in hand, waits at most that long for a turn,
never the quarter of an hour of a lockout. The failures are forgotten after `window_s` without
one, and at once by the right password.

Per address, at most `per_ip` failures in `window_s` (a sliding window): one machine trying many
names (a spray) is stopped there, whatever names it tries.

`begin` checks and counts an attempt in one step, before the password is checked: attempts sent
at once (each waiting for scrypt) would otherwise all pass the check before any failure was
written. A name is counted as a person would read it (case, width and surrounding spaces aside).
Kept in the process's memory: behind a load balancer each `gatescan web` process counts its own.
"""

from __future__ import annotations

import math
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
_PRUNE_AT = 10_000  # tracked names (or addresses) before quiet ones are forgotten


class LoginThrottle:
    def __init__(
        self,
        *,
        free_tries: int,
        first_delay_s: float,
        max_delay_s: float,
        per_ip: int,
        window_s: float,
        clock: Callable[[], float],
    ) -> None:
        if free_tries < 0 or per_ip < 1 or not 0 < first_delay_s <= max_delay_s or window_s <= 0:
            raise ValueError("a login throttle needs per_ip >= 1 and 0 < first <= max delay")
        self._free = free_tries
        self._first = first_delay_s
        self._max = max_delay_s
        self._per_ip = per_ip
        self._window = window_s
        self._clock = clock
        # Failure times: a name's keeps the streak up to the first failure at the longest delay,
        # an address's those of the window.
        self._streak = free_tries + math.ceil(math.log2(max_delay_s / first_delay_s)) + 1
        self._names: dict[tuple[str, str], deque[float]] = {}  # (name, known device or "")
        self._addresses: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def delay_after(self, failures: int) -> float:
        """How long after a name's latest failure its next attempt waits, with `failures` on
        record."""
        if failures < self._free:
            return 0.0
        return min(self._max, self._first * 2.0 ** min(failures - self._free, 64))

    def begin(self, username: str, client_ip: str, device: str = "") -> float:
        """Start an attempt: 0 and the attempt counted as a failure (until `succeeded`), or the
        seconds to wait and nothing counted. A known `device` (devices.py) has turns at the
        name of its own."""
        name = _name_key(username, device)
        now = self._clock()
        with self._lock:
            wait = max(self._name_wait(name, now), self._address_wait(client_ip, now))
            if wait == 0:
                self._count(name, client_ip, now)
            return wait

    def failures_from(self, client_ip: str) -> int:
        """The failures an address has on record in the window, attempts still being checked
        included: how far back its next login queues for a turn at scrypt (turns.py)."""
        with self._lock:
            self._address_wait(client_ip, self._clock())  # forgets what left the window
            return len(self._addresses.get(client_ip, ()))

    def failed(self, username: str, client_ip: str, device: str = "") -> None:
        """The attempt `begin` counted was a failure: the name's wait runs from now, when the
        answer is known, not from when the password check began."""
        now = self._clock()
        with self._lock:
            times = self._names.get(_name_key(username, device))
            if times:
                times[-1] = max(times[-1], now)

    def succeeded(self, username: str, client_ip: str, device: str = "") -> None:
        """A right password clears the name's failures (a known device's: its own), and takes
        back the address's count for this attempt (`begin` counted it): an office behind one
        address is not held up by its own good logins."""
        with self._lock:
            self._names.pop(_name_key(username, device), None)
            _take_back(self._addresses, client_ip)

    def withdrawn(self, username: str, client_ip: str, device: str = "") -> None:
        """Take back an attempt `begin` counted whose password was never checked (the server
        was too busy to): it is neither a failure nor a success."""
        with self._lock:
            _take_back(self._names, _name_key(username, device))
            _take_back(self._addresses, client_ip)

    def __len__(self) -> int:
        """How many names and addresses have failures on record."""
        with self._lock:
            return len(self._names) + len(self._addresses)

    def _name_wait(self, name: tuple[str, str], now: float) -> float:
        times = self._names.get(name)
        if not times:
            return 0.0
        if times[-1] <= now - self._window:  # quiet for a whole window: forgotten
            del self._names[name]
            return 0.0
        return max(0.0, times[-1] + self.delay_after(len(times)) - now)

    def _address_wait(self, client_ip: str, now: float) -> float:
        times = self._addresses.get(client_ip)
        if not times:
            return 0.0
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._addresses[client_ip]
            return 0.0
        if len(times) < self._per_ip:
            return 0.0
        return times[0] + self._window - now

    def _count(self, name: tuple[str, str], client_ip: str, now: float) -> None:
        if len(self._names) >= _PRUNE_AT:
            self._forget_quiet(self._names, now)
        if len(self._addresses) >= _PRUNE_AT:
            self._forget_quiet(self._addresses, now)
        self._names.setdefault(name, deque(maxlen=self._streak)).append(now)
        self._addresses.setdefault(client_ip, deque()).append(now)

    def _forget_quiet(self, table: dict[K, deque[float]], now: float) -> None:
        """Drop the names (or addresses) with no failure in the window, so a stream of made-up
        names cannot grow the table without bound."""
        for key in [key for key, times in table.items() if times[-1] <= now - self._window]:
            del table[key]


def canonical_name(username: str) -> str:
    """ "Manager", " manager " and "ｍａｎａｇｅｒ" (full width) are one name to the throttle."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def _name_key(username: str, device: str) -> tuple[str, str]:
    return canonical_name(username), device


def _take_back(table: dict[K, deque[float]], key: K) -> None:
    times = table.get(key)
    if times:
        times.pop()
    if not times:
        table.pop(key, None)
