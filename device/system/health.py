"""The gate's faults (camera, storage, ...) and link state, combined into one indicator state."""

from __future__ import annotations

import threading
from collections.abc import Callable

from device.indicator.base import IndicatorState


class Health:
    """Tracks named faults and whether the broker link is up; reports every change once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Watchers read the current state and apply it; one at a time, so the last one to run
        # (from the scanner, the MQTT thread or the frame watch) always applies the latest state.
        self._notify_lock = threading.Lock()
        self._faults: set[str] = set()
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
    def faults(self) -> list[str]:
        with self._lock:
            return sorted(self._faults)

    @property
    def online(self) -> bool:
        return self._online

    def indicator_state(self) -> IndicatorState:
        with self._lock:
            if self._faults:
                return IndicatorState.FAULT
            return IndicatorState.IDLE if self._online else IndicatorState.OFFLINE

    def set_fault(self, name: str, present: bool = True) -> None:
        with self._lock:
            before = set(self._faults)
            if present:
                self._faults.add(name)
            else:
                self._faults.discard(name)
            changed = before != self._faults
        if changed:
            self._on_change()

    def clear_fault(self, name: str) -> None:
        self.set_fault(name, present=False)

    def set_online(self, online: bool) -> None:
        with self._lock:
            changed = online != self._online
            self._online = online
        if changed:
            self._on_change()
