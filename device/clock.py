"""Wall clock, clock-sync detection and boot id: the gate's sense of time, injectable for tests.

A Pi has no battery-backed clock: after a power cut it starts from the last saved time until NTP
answers. Events therefore say whether the clock was synchronised, and carry the kernel's boot id
and a per-device sequence number so the collector can order them without trusting the clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_TIME_ERROR = 5  # adjtimex() result when the kernel clock is not synchronised


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def is_synced(self) -> bool: ...


class SystemClock:
    """The machine's clock; synchronised per systemd-timesyncd, else per the kernel's adjtimex."""

    def __init__(self, timesyncd_flag: Path = TIMESYNCD_FLAG) -> None:
        self._flag = timesyncd_flag

    def now(self) -> datetime:
        return datetime.now(UTC)

    def is_synced(self) -> bool:
        if self._flag.exists():
            return True
        state = _adjtimex_state()
        return state is not None and state != _TIME_ERROR


class FixedSyncClock:
    """The system time with a sync flag the caller sets (tests, the demo, fault injection)."""

    def __init__(self, synced: bool = True) -> None:
        self.synced = synced

    def now(self) -> datetime:
        return datetime.now(UTC)

    def is_synced(self) -> bool:
        return self.synced


class _Timex(ctypes.Structure):
    # struct timex is 208 bytes on 64-bit Linux; only `modes` (first field) is written.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 204)]


def _adjtimex_state() -> int | None:
    """The kernel clock state (TIME_OK=0 ... TIME_ERROR=5), or None where it cannot be read."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
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
