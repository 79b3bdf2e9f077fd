"""The gate's faults (a closed set: `Fault`) and its link state; the indicator shows them
(device/indicator/base.py: `background_state`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum


class Fault(StrEnum):
    """What can be wrong with a gate: named in its retained status and telemetry (the values are
    the wire's words), shown by the light as the fault pattern, listed on the dashboard."""

    CAMERA = "camera"  # no frame: the camera failed, hangs, or is missing
    STORAGE = "storage"  # the journal cannot be written (card full, I/O error); scans are held


class Health:
    """Tracks named faults and whether the broker link is up; reports every change once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Watchers read the current state and apply it; one at a time, so the last one to run
        # (from the scanner, the MQTT thread or the frame watch) always applies the latest state.
        self._notify_lock = threading.Lock()
        self._faults: set[Fault] = set()
        self._online = False
        self._watchers: list[Callable[[Health], None]] = []

    def watch(self, callback: Callable[[Health], None]) -> None:
        """Call `callback(self)` after every change of faults or link state."""
        self._watchers.append(callback)

    def _on_change(self) -> None:
        with self._notify_lock:
            for callback in self._watchers:
                callback(self)

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return sorted(self._faults)

    @property
    def online(self) -> bool:
        return self._online

    def set_fault(self, fault: Fault, present: bool = True) -> None:
        with self._lock:
            before = set(self._faults)
            if present:
                self._faults.add(fault)
            else:
                self._faults.discard(fault)
            changed = before != self._faults
        if changed:
            self._on_change()

    def clear_fault(self, fault: Fault) -> None:
        self.set_fault(fault, present=False)

    def set_online(self, online: bool) -> None:
        with self._lock:
            changed = online != self._online
            self._online = online
        if changed:
            self._on_change()
