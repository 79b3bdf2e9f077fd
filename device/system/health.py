"""The gate's faults (a closed set: `Fault`), its link state (`LinkState`: why it is not
connected, when it is not) and whether its clock is synchronised; the indicator shows them
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
    # Not a fault of the gate but a flag people must see: the fire-alarm input is active and the
    # door is held released (device/indicator/door.py). Its own light, over every other.
    FIRE_ALARM = "fire_alarm"
    # Access mode with nothing to trust: no site key and no allow list held (or no site policy
    # yet), so every code is refused. The door stays shut and says why (device/verdict/policy.py).
    POLICY = "policy"


class LinkState(StrEnum):
    """The broker link, and when it is down, the likeliest reason, from what connecting said
    (device/uplink/link.py): each has its own light, because each has its own fix."""

    UP = "up"
    CONNECTING = "connecting"  # not connected yet, no answer either way
    NO_NETWORK = "no_network"  # no route, no address, no DNS: the gate's own network
    UNREACHABLE = "broker_unreachable"  # the network answers, the broker does not
    REFUSED = "credentials_refused"  # bad user or password, not authorised, or a broker
    # certificate the gate refused: the identity (or its CA) is wrong, retrying will not help


class Health:
    """Tracks named faults and whether the broker link is up; reports every change once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Watchers read the current state and apply it; one at a time, so the last one to run
        # (from the scanner, the MQTT thread or the frame watch) always applies the latest state.
        self._notify_lock = threading.Lock()
        self._faults: set[Fault] = set()
        self._link = LinkState.CONNECTING
        self._clock_synced = True
        self._releases: dict[str, int] = {}
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
        return self._link is LinkState.UP

    @property
    def link(self) -> LinkState:
        return self._link

    @property
    def clock_synced(self) -> bool:
        return self._clock_synced

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

    def count_release(self, kind: str) -> None:
        """One more release of the door that no verdict granted (a fire alarm, a button)."""
        with self._lock:
            self._releases[kind] = self._releases.get(kind, 0) + 1

    def releases(self, kind: str) -> int:
        """How many releases of `kind` since the gate started."""
        with self._lock:
            return self._releases.get(kind, 0)

    def set_online(self, online: bool) -> None:
        """Up, or down without a reason known: the broker is unreachable until told better."""
        if online:
            self.set_link(LinkState.UP)
        elif self._link is LinkState.UP:
            self.set_link(LinkState.UNREACHABLE)

    def set_link(self, state: LinkState) -> None:
        with self._lock:
            changed = state is not self._link
            self._link = state
        if changed:
            self._on_change()

    def set_clock_synced(self, synced: bool) -> None:
        with self._lock:
            changed = synced != self._clock_synced
            self._clock_synced = synced
        if changed:
            self._on_change()
