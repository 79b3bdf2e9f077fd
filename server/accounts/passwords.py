"""Password hashing for dashboard users: scrypt, and a cap on how many hashes run at once.

scrypt is memory-hard on purpose: each hash takes 32 MiB. A burst of logins (a shift change, or
someone trying passwords) would otherwise run one hash per web worker thread at once, about 40
with FastAPI's thread pool, 1.25 GiB: more than a Raspberry Pi with 1 GB has. `LimitedHasher`
lets a few run (2 by default: 64 MiB, two of a Pi's four cores, the collector keeps the rest),
lets a few more wait their turn briefly, and refuses the rest at once with `HashingBusy`, which
the password page answers with 503 and Retry-After.

Why wait at all, and why not wait longer: a hash takes about 0.26 s on a PC (about 0.75 s on a
Pi 5, estimated), so a short queue absorbs a burst without a refusal; but each waiting caller
holds a worker thread, so the queue is short and the wait bounded: the pages stay served. A
login waits for its turn before it gets here, as a coroutine rather than a thread, in a deeper
queue (server/dashboard/login/turns.py, at most as many at once as this): it seldom waits here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

HASHES_AT_ONCE = 2
HASHES_WAITING = 8
HASH_WAIT_S = 3.0


class Hasher(Protocol):
    """What accounts need of a password hasher (tests pass an instrumented one)."""

    def hash(self, password: str) -> str: ...

    def verify(self, password: str, encoded: str) -> bool: ...


class HashingBusy(RuntimeError):
    """Too many password hashes running or waiting: try again in a moment (503)."""


@dataclass(frozen=True)
class PasswordHasher:
    """scrypt with parameters kept inside each hash, so they can be raised later.

    N=2^15, r=8 is 32 MiB per hash; at that memory OWASP's password storage cheat sheet asks
    for p=3 (its equivalents of N=2^17, p=1). p costs time, not memory (OpenSSL runs the lanes
    one after another): a login takes three times p=1's time (0.1 s -> 0.26 s on an x86 PC).
    """

    n: int = 2**15
    r: int = 8
    p: int = 3

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        digest = self._derive(password, salt, self.n, self.r, self.p)
        return f"scrypt${self.n}${self.r}${self.p}${salt.hex()}${digest.hex()}"

    def verify(self, password: str, encoded: str) -> bool:
        try:
            scheme, n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                return False
            derived = self._derive(password, bytes.fromhex(salt), int(n), int(r), int(p))
        except ValueError:
            return False
        return hmac.compare_digest(derived, bytes.fromhex(digest))

    @staticmethod
    def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        # maxmem: scrypt needs 128 * n * r bytes; OpenSSL's default cap (32 MiB) is too tight.
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32
        )


class LimitedHasher:
    """`hasher` with at most `at_once` hashes running; up to `waiting` more wait up to `wait_s`
    seconds for a turn, and any other raises HashingBusy at once."""

    def __init__(
        self,
        hasher: Hasher,
        *,
        at_once: int = HASHES_AT_ONCE,
        waiting: int = HASHES_WAITING,
        wait_s: float = HASH_WAIT_S,
    ) -> None:
        if at_once < 1 or waiting < 0 or wait_s < 0:
            raise ValueError("at_once must be >= 1, waiting and wait_s >= 0")
        self._hasher = hasher
        self._turns = threading.BoundedSemaphore(at_once)
        self._max_waiting = waiting
        self._wait_s = wait_s
        self._queued = 0  # waiting for a turn
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        with self._turn():
            return self._hasher.hash(password)

    def verify(self, password: str, encoded: str) -> bool:
        with self._turn():
            return self._hasher.verify(password, encoded)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        if not self._turns.acquire(blocking=False):  # usually a turn is free: no queue
            self._wait_for_turn()
        try:
            yield
        finally:
            self._turns.release()

    def _wait_for_turn(self) -> None:
        with self._lock:
            if self._queued >= self._max_waiting:
                raise HashingBusy("too many password hashes waiting")
            self._queued += 1
        try:
            got = self._turns.acquire(timeout=self._wait_s)
        finally:
            with self._lock:
                self._queued -= 1
        if not got:
            raise HashingBusy(f"no turn to hash a password within {self._wait_s:g} s")
