"""A rate limit in a sliding window per user name and per client address: what the password
page counts its changes with (logins have the throttle of server/dashboard/login/throttle.py).

Kept in the process's memory: behind a load balancer each `gatescan web` process counts its own,
so a site with K processes allows up to K times the limit; scrypt's cost bounds guessing anyway.

`begin` checks and counts an attempt in one step, before the password is checked: attempts sent
at once (each waiting on scrypt) would otherwise all pass the check before any failure was
written. A name is counted as a person would read it (case, width and surrounding spaces aside).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from server.dashboard.login.throttle import canonical_name

_PRUNE_AT = 10_000  # tracked names and addresses before old ones are forgotten


class LoginRateLimiter:
    def __init__(
        self,
        *,
        per_user: int,
        per_ip: int,
        window_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._limits = {"user": per_user, "ip": per_ip}
        self._window = window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def begin(self, username: str, client_ip: str) -> float:
        """Start an attempt: 0 and the attempt counted as a failure (until `succeeded`), or the
        seconds to wait and nothing counted."""
        now = self._clock()
        with self._lock:
            wait = max(self._wait(key, now) for key in _keys(username, client_ip))
            if wait == 0:
                self._count(username, client_ip, now)
            return wait

    def failed(self, username: str, client_ip: str) -> None:
        now = self._clock()
        with self._lock:
            self._count(username, client_ip, now)

    def succeeded(self, username: str, client_ip: str) -> None:
        """A right password clears the name's failures, and takes back the address's count for
        this attempt (`begin` counted it): an office behind one address is not locked out by
        its own good logins."""
        user_key, ip_key = _keys(username, client_ip)
        with self._lock:
            self._failures.pop(user_key, None)
            times = self._failures.get(ip_key)
            if times:
                times.pop()
            if not times:
                self._failures.pop(ip_key, None)

    def withdrawn(self, username: str, client_ip: str) -> None:
        """Take back an attempt `begin` counted whose password was never checked (the server
        was too busy to): it is neither a failure nor a success."""
        with self._lock:
            for key in _keys(username, client_ip):
                times = self._failures.get(key)
                if times:
                    times.pop()
                if not times:
                    self._failures.pop(key, None)

    def __len__(self) -> int:
        """How many names and addresses have failures on record."""
        with self._lock:
            return len(self._failures)

    def _count(self, username: str, client_ip: str, now: float) -> None:
        if len(self._failures) >= _PRUNE_AT:
            self._forget_old(now)
        for key in _keys(username, client_ip):
            self._failures.setdefault(key, deque()).append(now)

    def _forget_old(self, now: float) -> None:
        """Drop names and addresses whose failures are all outside the window, so a stream of
        made-up names cannot grow the table without bound."""
        for key in [k for k, times in self._failures.items() if times[-1] <= now - self._window]:
            del self._failures[key]

    def _wait(self, key: tuple[str, str], now: float) -> float:
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < self._limits[key[0]]:
            return 0.0
        return times[0] + self._window - now


def _keys(username: str, client_ip: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("user", canonical_name(username)), ("ip", client_ip)
