"""A gate whose config cannot be used stays up in the `config_error` state instead of exiting
into a restart loop: it logs every problem at once, shows its light, pings the systemd watchdog
(so systemd does not kill and restart it every few seconds), reports the `config` fault in its
retained status when the broker part of the config is usable, and reads the file again every
RELOAD_S seconds: once it loads, the gate starts with it, with no restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from device.indicator.base import Indicator, IndicatorState
from device.system.systemd_notify import SystemdNotifier
from firmware_config.errors import ConfigError
from firmware_config.schema import GateConfig

log = logging.getLogger("gatescan.agent")

RELOAD_S = 2.0
CONFIG_FAULT = "config"  # the word in the retained status's faults (docs/protocol.md)


class ConfigErrorState:
    def __init__(
        self,
        error: ConfigError,
        *,
        reload: Callable[[], GateConfig],
        indicator: Indicator,
        notifier: SystemdNotifier,
        reload_s: float = RELOAD_S,
    ) -> None:
        self.error = error
        self.reload = reload
        self.indicator = indicator
        self.notifier = notifier
        self.reload_s = reload_s

    def wait(self, stop: threading.Event) -> GateConfig | None:
        """Until the config loads (then that config) or `stop` is set (then None)."""
        self.indicator.set_state(IndicatorState.CONFIG_ERROR)
        self._log(self.error)
        summary = f"config error ({len(self.error.problems)} problems): fix the file; see the log"
        self.notifier.ready(summary)
        shown = str(self.error)
        while not stop.wait(self.reload_s):
            self.notifier.watchdog()
            try:
                config = self.reload()
            except ConfigError as error:
                if str(error) != shown:  # a new edit, still wrong: say what is left
                    shown = str(error)
                    self._log(error)
                    self.notifier.status(f"config error ({len(error.problems)} problems)")
                continue
            log.warning("config fixed: starting")
            return config
        return None

    def _log(self, error: ConfigError) -> None:
        log.error(
            "bad configuration, %d problem(s); the gate waits for a fixed file:",
            len(error.problems),
        )
        for problem in error.problems:
            log.error("  %s", problem)
