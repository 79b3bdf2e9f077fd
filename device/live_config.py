"""A running gate's settings changed without a restart (issue 17): a push from the dashboard
(`push_config`), and the file read again (the `reload_config` command, SIGHUP).

    live = LiveConfig(config, load=..., apply=agent.apply, data_dir=...)
    live.push({"policy.mode": "access"})   -> Outcome: done, refused (with the problems), failed
    live.reload()                          -> Outcome: the file and the kept push read again

Before anything changes the whole config is checked as it would be after a reboot: the file, the
push over it, the flags over both (`load`, firmware_config/loader.py). A push or file the model
refuses changes nothing and the gate goes on scanning with what it ran; the answer names the
problems. A push that passes is kept first (pushed_config.json in the data dir, replaced whole
and durably) and applied second, so what the gate runs is always what it would run after a
reboot. Only firmware_config/pushed.py's PUSHABLE keys are applied live, by `apply` between two
frames; any other key the file changed since the start waits for the next restart, and the answer
says which.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from device.system.atomic_files import write_atomically
from device.uplink.commands import Outcome
from firmware_config.errors import ConfigError
from firmware_config.pushed import PUSHABLE, check_pushed, pushed_bytes, pushed_path, read_pushed
from firmware_config.schema import GateConfig

log = logging.getLogger("gatescan.config")

# load(pushed settings) -> the whole config as after a reboot, or ConfigError.
Load = Callable[[Mapping[str, Any]], GateConfig]


class LiveConfig:
    """The config a gate runs, changed live; one change at a time (paho's thread for commands,
    a thread of SIGHUP's), never in the frame loop: `apply` hands the new parts over to it."""

    def __init__(
        self,
        running: GateConfig,
        *,
        load: Load,
        apply: Callable[[GateConfig], None],
        data_dir: Path,
        pushed: Mapping[str, Any] | None = None,
    ) -> None:
        self.running = running
        self.pushed: dict[str, Any] = dict(pushed or {})
        self._load = load
        self._apply = apply
        self._data_dir = data_dir
        self._lock = threading.Lock()

    def push(self, settings: Mapping[str, Any]) -> Outcome:
        """The dashboard's whole push: checked over the file, kept, then applied."""
        with self._lock:
            try:
                check_pushed(settings)
                fresh = self._load(settings)
            except ConfigError as error:
                return _refused("push", error)
            try:
                write_atomically(pushed_path(self._data_dir), pushed_bytes(settings), mode=0o640)
            except OSError as error:
                log.error("config push not kept, so not applied: %s", error.strerror)
                kept = f"cannot keep the settings ({error.strerror}): none applied"
                return Outcome("failed", kept)
            self.pushed = dict(settings)
            outcome = self._changed_to(fresh)
            held = [key for key in settings if _value(fresh, key) != settings[key]]
            if held:  # a flag over the push (the agent's --mode): flags beat a push
                detail = f"{outcome.detail}; held by the agent's flags: {', '.join(held)}"
                outcome = Outcome(outcome.status, detail)
            return outcome

    def reload(self) -> Outcome:
        """The file and the kept push read again (`reload_config`, SIGHUP)."""
        with self._lock:
            try:
                pushed = read_pushed(self._data_dir)
                fresh = self._load(pushed)
            except ConfigError as error:
                return _refused("file", error)
            self.pushed = pushed
            return self._changed_to(fresh)

    def _changed_to(self, fresh: GateConfig) -> Outcome:
        live = {key: _value(fresh, key) for key in PUSHABLE}
        live = {key: value for key, value in live.items() if value != _value(self.running, key)}
        later = [
            name
            for name in GateConfig.model_fields
            if getattr(self.running, name) != getattr(fresh, name)
            and not _only_live(self.running, fresh, name)
        ]
        if live:
            applied = self.running
            for key, value in live.items():
                applied = _with_value(applied, key, value)
            self._apply(applied)
            self.running = applied
            log.warning("config applied live: %s", ", ".join(live))
        parts = [f"applied live: {', '.join(live)}" if live else "nothing to apply live"]
        if later:
            parts.append(f"at the next restart: {', '.join(later)}")
        return Outcome("done", "; ".join(parts))


def _refused(what: str, error: ConfigError) -> Outcome:
    log.warning("config %s refused, the gate goes on as it ran:\n%s", what, error)
    problems = " | ".join(str(error).splitlines())
    return Outcome("refused", f"the gate goes on as it ran; problems: {problems}")


def _value(config: GateConfig, key: str) -> Any:
    value: Any = config
    for name in key.split("."):
        value = getattr(value, name)
    return value


def _with_value(config: GateConfig, key: str, value: Any) -> GateConfig:
    section, _, name = key.rpartition(".")
    if not section:
        return config.model_copy(update={name: value})
    inner = getattr(config, section)
    return config.model_copy(update={section: inner.model_copy(update={name: value})})


def _only_live(running: GateConfig, fresh: GateConfig, name: str) -> bool:
    """Whether section `name` differs in pushable keys alone (so applying them makes it equal)."""
    patched = running
    for key in PUSHABLE:
        if key.split(".", 1)[0] == name:
            patched = _with_value(patched, key, _value(fresh, key))
    return getattr(patched, name) == getattr(fresh, name)


def kept_push(data_dir: Path) -> dict[str, Any]:
    """The settings kept from the last push, for a gate starting; {} (logged) for a file that
    cannot be read: a broken push never keeps a gate from starting."""
    try:
        return read_pushed(data_dir)
    except ConfigError as error:
        log.error(
            "the pushed settings are not used (push them again from the dashboard):\n%s", error
        )
        return {}
