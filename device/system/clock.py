"""Wall clock, clock-sync detection and boot id: the gate's sense of time, injectable for tests.

A Pi has no battery-backed clock: after a power cut it starts from the last saved time until NTP
answers. Events therefore say whether the clock was synchronised, and carry the kernel's boot id
and a per-device sequence number so the collector can order them without trusting the clock.

Fault injection: the environment variable GATESCAN_FAULT_CLOCK makes the agent use a faulty clock,
so a test can start the real agent process with a wrong clock. It is inert unless set, and the
agent logs a warning at start when it is. Comma-separated items:

    unsynced             events say clock_synced: false (synced: true)
    offset=SECONDS       the clock is off by SECONDS (negative: behind) from the start
    jump=SECONDS@AFTER   AFTER seconds after the agent started, the clock steps by SECONDS, as an
                         NTP step does (negative: backwards)

Example: GATESCAN_FAULT_CLOCK="unsynced,jump=-3600@3" (unsynchronised; an hour back after 3 s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
FAULT_CLOCK_ENV = "GATESCAN_FAULT_CLOCK"
TIME_ERROR = 5  # adjtimex() result when the kernel clock is not synchronised


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def is_synced(self) -> bool: ...


class SystemClock:
    """The machine's clock; synchronised per systemd-timesyncd, else per the kernel's adjtimex.

    timesyncd creates its flag file once it has synchronised the clock, and only then; where it
    does not run (chrony, ntpd), the kernel's own state says whether an NTP daemon disciplines the
    clock. `kernel_state` is that reading (None where it cannot be had); tests pass their own.
    """

    def __init__(
        self,
        timesyncd_flag: Path = TIMESYNCD_FLAG,
        kernel_state: Callable[[], int | None] | None = None,
    ) -> None:
        self._flag = timesyncd_flag
        self._kernel_state = kernel_state or kernel_clock_state

    def now(self) -> datetime:
        return datetime.now(UTC)

    def is_synced(self) -> bool:
        if self._flag.exists():
            return True
        state = self._kernel_state()
        return state is not None and state != TIME_ERROR


class FixedSyncClock:
    """The system time with a sync flag the caller sets (tests, the demo, fault injection)."""

    def __init__(self, synced: bool = True) -> None:
        self.synced = synced

    def now(self) -> datetime:
        return datetime.now(UTC)

    def is_synced(self) -> bool:
        return self.synced


class _Timex(ctypes.Structure):
    # struct timex is 208 bytes on 64-bit Linux (less on 32-bit): only `modes`, its first field,
    # is written (0: read only), and the buffer is large enough for either.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 204)]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """libc, looked up once: find_library runs `ldconfig -p`, too slow for every event."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def kernel_clock_state() -> int | None:
    """The kernel clock state (TIME_OK=0 ... TIME_ERROR=5), or None where it cannot be read."""
    libc = _libc()
    if libc is None:
        return None
    try:
        timex = _Timex()
        state = int(libc.adjtimex(ctypes.byref(timex)))
    except (OSError, AttributeError):
        return None
    return state if state >= 0 else None


def read_boot_id(path: Path = BOOT_ID_FILE) -> str:
    """The kernel's id of this boot; a fresh random id where the kernel offers none."""
    try:
        value = path.read_text().strip()
    except OSError:
        value = ""
    return value if value else str(uuid.uuid4())


# --- fault injection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockFault:
    """What is wrong with an injected clock (see the module docstring for the text form)."""

    synced: bool | None = None  # None: as the real clock says
    offset: float = 0.0
    jump: float = 0.0
    jump_after: float | None = None  # seconds after start; None: no jump


FAULT_ITEMS = "unsynced, synced, offset=SECONDS, jump=SECONDS@AFTER"


def parse_clock_fault(spec: str) -> ClockFault:
    """`unsynced,jump=-3600@3` as a ClockFault; ValueError naming the bad item otherwise."""
    fault = ClockFault()
    for item in (part.strip() for part in spec.split(",")):
        name, _, value = item.partition("=")
        try:
            if item in ("unsynced", "synced"):
                fault = replace(fault, synced=item == "synced")
            elif name == "offset":
                fault = replace(fault, offset=_seconds(value))
            elif name == "jump":
                jump, at, after = value.partition("@")
                if not at or _seconds(after) < 0:
                    raise ValueError("AFTER must be seconds >= 0")
                fault = replace(fault, jump=_seconds(jump), jump_after=_seconds(after))
            else:
                raise ValueError("unknown item")
        except ValueError as exc:
            raise ValueError(f"{FAULT_CLOCK_ENV}: {item!r}: {exc}; use {FAULT_ITEMS}") from None
    return fault


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number of seconds")
    return value


class FaultyClock:
    """Another clock with injected faults: a wrong sync flag, an offset, a step at a set time."""

    def __init__(
        self,
        base: Clock,
        fault: ClockFault,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.fault = fault
        self._monotonic = monotonic
        self._started = monotonic()
        self._lock = threading.Lock()
        self._jumped = False

    def now(self) -> datetime:
        return self.base.now() + timedelta(seconds=self.fault.offset + self._jump_so_far())

    def is_synced(self) -> bool:
        return self.base.is_synced() if self.fault.synced is None else self.fault.synced

    def _jump_so_far(self) -> float:
        after = self.fault.jump_after
        if after is None or self._monotonic() - self._started < after:
            return 0.0
        with self._lock:
            first, self._jumped = not self._jumped, True
        if first:
            log.warning("fault injection: the clock steps by %+.0f s now", self.fault.jump)
        return self.fault.jump


def clock_from_environment(env: Mapping[str, str], base: Clock | None = None) -> Clock:
    """The real clock, or a FaultyClock over it when GATESCAN_FAULT_CLOCK asks for one."""
    real = base if base is not None else SystemClock()
    spec = env.get(FAULT_CLOCK_ENV, "").strip()
    if not spec:
        return real
    fault = parse_clock_fault(spec)
    log.warning("fault injection: %s=%r (a test setting; never on a gate)", FAULT_CLOCK_ENV, spec)
    return FaultyClock(real, fault)
