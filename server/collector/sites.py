"""Each registered gate's site, for the collector's check of every event (docs/protocol.md,
`wrong_site`): a gate's site is its registration's, not what its card says.

The network thread reads `GateSites.current` once per event (a dict lookup, no query); a thread
of its own asks the registry every REFRESH_S whether it changed (one tiny query) and, only then,
swaps in a new dict. `refresh()` does it at once (the enrolment service calls it after a gate
enrolled, in the same process). Gates not in the registry (the demo, the benches, gates kept in
the broker's password file) are not checked.
"""

from __future__ import annotations

import logging
import threading

from server.store.gates import GateRegistry

log = logging.getLogger("gatescan.collector")

REFRESH_S = 2.0


class GateSites:
    def __init__(self, registry: GateRegistry, refresh_s: float = REFRESH_S) -> None:
        self._registry = registry
        self._refresh_s = refresh_s
        self._version: tuple[object, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.current: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> None:
        """Reread the registry if it changed since the last read."""
        with self._lock:
            version = self._registry.version()
            if version != self._version:
                self.current = self._registry.sites()  # one reference swap: readers never lock
                self._version = version

    def start(self) -> None:
        def watch() -> None:
            while not self._stop.wait(self._refresh_s):
                try:
                    self.refresh()
                except Exception:  # a database hiccup: keep the old map, try again
                    log.exception("could not reread the gate registry")

        self._thread = threading.Thread(target=watch, name="gate-sites", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)  # a daemon: a stuck read must not hold the stop
