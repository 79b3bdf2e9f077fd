"""Turns to check a login's password: at most `at_once` checks run (each in a worker thread,
scrypt's 32 MiB each), and up to `waiting` more wait for a turn for at most `wait_s`; any other
is refused at once with HashingBusy (503 with Retry-After).

Who waits least: a login's `rank` (the failures its client address has on record, those still
being checked included), then who came first. So one address's flood is served in turn with
everyone else's, one of its logins at a time: a login from an address with no failures goes
before the second of each flooding address's, and before every login of one that keeps failing.

A login waiting here is a coroutine, not a worker thread: the wait can be long enough, and the
queue deep enough, for a real login to get its turn behind a burst of bad ones (40 at once took
the 40 worker threads of the pool the pages need, and the real login got 503). Turns are handed
across event loops (each of the test client's browsers runs its own), so the queue is guarded by
a thread lock and a turn is handed to its waiter on the waiter's own loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from server.accounts.passwords import HashingBusy

T = TypeVar("T")
_Waiter = tuple[int, int, asyncio.AbstractEventLoop, "asyncio.Future[None]"]  # rank, arrival


class CheckTurns:
    def __init__(self, *, at_once: int, waiting: int, wait_s: float) -> None:
        if at_once < 1 or waiting < 0 or wait_s < 0:
            raise ValueError("at_once must be >= 1, waiting and wait_s >= 0")
        self._free = at_once
        self._max_waiting = waiting
        self._wait_s = wait_s
        self._waiters: list[_Waiter] = []  # a heap: the lowest rank, then the first come
        self._arrivals = itertools.count()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    async def run(self, check: Callable[[], T], rank: int = 0) -> T:
        """`check()` in a worker thread once a turn is free; HashingBusy if none comes."""
        await self._take_turn(rank)
        try:
            return await run_in_threadpool(check)
        finally:
            self._give_back()

    async def _take_turn(self, rank: int) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            if len(self._waiters) >= self._max_waiting:
                raise HashingBusy("too many password checks waiting")
            waiter: _Waiter = (rank, next(self._arrivals), loop, loop.create_future())
            heapq.heappush(self._waiters, waiter)
        turn = waiter[3]
        try:
            await asyncio.wait({turn}, timeout=self._wait_s)
        except asyncio.CancelledError:  # the client went away while it waited
            if not self._leave(waiter):
                if turn.done():
                    self._give_back()  # a turn came just now: pass it on
                else:
                    turn.cancel()  # a turn is on its way: _hand passes it on
            raise
        if turn.done():
            return
        if self._leave(waiter):
            raise HashingBusy(f"no turn to check a password within {self._wait_s:g} s")
        await turn  # a turn was handed over as the wait ended: it is on its way

    def _leave(self, waiter: _Waiter) -> bool:
        """Leave the queue; False when a turn was already handed to this waiter."""
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return False
            heapq.heapify(self._waiters)
            return True

    def _give_back(self) -> None:
        with self._lock:
            if not self._waiters:
                self._free += 1
                return
            _, _, loop, turn = heapq.heappop(self._waiters)
        try:
            loop.call_soon_threadsafe(self._hand, turn)
        except RuntimeError:  # that waiter's loop has closed: the turn goes to the next one
            self._give_back()

    def _hand(self, turn: asyncio.Future[None]) -> None:
        if turn.done():  # its login was cancelled meanwhile
            self._give_back()
        else:
            turn.set_result(None)
