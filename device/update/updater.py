"""`gatescan update --to V`: verify, install beside, switch, watch, and switch back.

    lock ─▶ finish a stopped update ─▶ fetch ─▶ signature, version ─▶ unpack, digests
      ─▶ install as releases/.partial-V-*, renamed to releases/V   (progress.json written)
      ─▶ previous -> U ─▶ current -> V ─▶ restart the agent
      ─▶ within the health window: READY, then the new agent's health file (this pid, this
         version, a processed frame, the broker): `updated`
      ─▶ else current -> U, restart, `update_failed` with the reason

Every link is replaced by a rename (device/update/layout.py), and a release folder appears
only whole, so whenever the updater dies `current` names a whole release. What it was doing is
in progress.json until it finishes; the next run (`--recover` at boot, or any update) reads it
and, finding `current` on a release that was never judged healthy, switches back.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device.system.atomic_files import write_atomically
from device.update.agent_control import AgentControl
from device.update.bundle import MAX_BUNDLE_BYTES, read_signed_manifest, unpack_payload
from device.update.failpoints import (
    AFTER_INSTALL,
    AFTER_PREVIOUS,
    AFTER_RESTART,
    AFTER_SWITCH,
    UpdaterFailpoints,
)
from device.update.health import AgentHealth, read_health
from device.update.install import SYSTEM_PYTHON, InstallError, install
from device.update.layout import LOCK_NAME, PARTIAL_PREFIX, Layout, is_whole, mark_whole, point
from device.update.requests import read_result, write_result
from protocol.release_bundle import (
    Manifest,
    Refusal,
    ReleaseRefused,
    check_acceptable,
    parse_trusted_keys,
)

log = logging.getLogger("gatescan.update")

DEFAULT_HEALTH_WINDOW_S = 90.0  # a Pi's camera and broker: well under 30 s when healthy
ROLLBACK_READY_S = 60.0
POLL_S = 0.1
DOWNLOAD_TIMEOUT_S = 60.0

UPDATED = "updated"
FAILED = "update_failed"
REFUSED = "update_refused"
UNCHANGED = "unchanged"


class UpdateBusy(RuntimeError):
    """Another update holds the lock."""


@dataclass
class Outcome:
    outcome: str
    version: str
    from_version: str | None
    reason: str = ""
    refusal: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def as_record(self, running: str | None) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "version": self.version,
            "from": self.from_version,
            "running": running,
            "reason": self.reason,
            "refusal": self.refusal,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            **{f"{name}_s": round(seconds, 2) for name, seconds in self.timings.items()},
        }


class Updater:
    def __init__(
        self,
        layout: Layout,
        control: AgentControl,
        *,
        health_window_s: float = DEFAULT_HEALTH_WINDOW_S,
        failpoints: UpdaterFailpoints | None = None,
        python: str = SYSTEM_PYTHON,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.layout = layout
        self.control = control
        self.health_window_s = health_window_s
        self.failpoints = failpoints or UpdaterFailpoints()
        self.python = python
        self.clock = clock

    # -- the steps --------------------------------------------------------------------------

    def update(self, version: str, source: str, *, allow_downgrade: bool = False) -> Outcome:
        """Update to `version` from `source` (a file or an http(s) URL); the outcome is also
        written to the result file. UpdateBusy when another update runs."""
        with self._locked():
            self._recover()
            running = self.layout.running_version()
            try:
                outcome = self._update(version, source, running, allow_downgrade)
            except ReleaseRefused as refused:
                log.error("update to %s refused: %s", version, refused)
                outcome = Outcome(REFUSED, version, running, str(refused), refused.reason.value)
            except (InstallError, OSError) as exc:
                log.error("update to %s not installed: %s", version, exc)
                outcome = Outcome(REFUSED, version, running, f"not installed: {exc}", "install")
            if outcome.outcome != UNCHANGED:
                write_result(self.layout.result, outcome.as_record(self.layout.running_version()))
            return outcome

    def recover(self) -> Outcome | None:
        """Finish an update a crash or power cut stopped (at boot): None when there was none."""
        with self._locked():
            return self._recover()

    def _update(
        self, version: str, source: str, running: str | None, allow_downgrade: bool
    ) -> Outcome:
        trusted = self._trusted_keys()
        incoming = Path(tempfile.mkdtemp(prefix="incoming-", dir=self.layout.state))
        try:
            bundle = self._fetch(source, incoming)
            manifest = read_signed_manifest(bundle, trusted)
            check_acceptable(
                manifest, wanted=version, running=running, allow_downgrade=allow_downgrade
            )
            if version == running and is_whole(self.layout.release(version)):
                log.info("already running %s: nothing to do", version)
                return Outcome(UNCHANGED, version, running, f"already running {version}")
            payload = unpack_payload(bundle, manifest, incoming)
            self._install(manifest, payload)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        return self._switch_and_watch(version, running)

    def _switch_and_watch(self, version: str, running: str | None) -> Outcome:
        layout = self.layout
        earlier_previous = layout.linked_version(layout.previous)
        progress = {"to": version, "from": running, "previous": earlier_previous}
        write_atomically(layout.progress, _json(progress), 0o644)
        self.failpoints.reached(AFTER_INSTALL)
        if running is not None:
            point(layout.previous, layout.release(running))
        self.failpoints.reached(AFTER_PREVIOUS)
        switched_at = self.clock()
        point(layout.current, layout.release(version))
        log.info("switched: current -> releases/%s (was %s)", version, running)
        self.failpoints.reached(AFTER_SWITCH)
        try:
            self.control.restart()
        except OSError as exc:
            healthy, reason = False, f"the agent could not be restarted on {version}: {exc}"
        else:
            self.failpoints.reached(AFTER_RESTART)
            healthy, reason = self._wait_healthy(version, switched_at + self.health_window_s)
        if healthy:
            layout.progress.unlink(missing_ok=True)
            self._prune()
            seconds = self.clock() - switched_at
            log.info("release %s is healthy %.1f s after the switch", version, seconds)
            return Outcome(UPDATED, version, running, timings={"healthy_after": seconds})
        log.error("release %s is not healthy: %s; switching back", version, reason)
        rollback_started = self.clock()
        back = self._switch_back(version, running, earlier_previous)
        timings = {
            "health_window": rollback_started - switched_at,
            "rollback": self.clock() - rollback_started,
        }
        return Outcome(FAILED, version, running, f"{reason}; {back}", timings=timings)

    def _switch_back(self, version: str, running: str | None, earlier: str | None) -> str:
        layout = self.layout
        if running is None or not is_whole(layout.release(running)):
            layout.progress.unlink(missing_ok=True)
            return "no earlier release to go back to: left on it"
        point(layout.current, layout.release(running))
        if earlier is not None and is_whole(layout.release(earlier)):
            point(layout.previous, layout.release(earlier))
        else:
            layout.previous.unlink(missing_ok=True)
        layout.progress.unlink(missing_ok=True)
        try:
            self.control.restart()
        except OSError as exc:
            return f"back on {running}, but its agent could not be restarted: {exc}"
        deadline = self.clock() + ROLLBACK_READY_S
        while self.clock() < deadline:
            if self.control.ready_pid() is not None:
                return f"back on {running}"
            time.sleep(POLL_S)
        return f"back on {running}, which has not said READY within {ROLLBACK_READY_S:.0f} s"

    def _wait_healthy(self, version: str, deadline: float) -> tuple[bool, str]:
        pid: int | None = None
        health: AgentHealth | None = None
        while self.clock() < deadline:
            pid = self.control.ready_pid()
            if pid is not None:
                health = read_health(self.layout.agent_data)
                if health is not None and health.healthy_as(version, pid):
                    return True, ""
            time.sleep(POLL_S)
        window = f"within {self.health_window_s:g} s"
        if pid is None:
            return False, f"the agent of {version} did not say READY {window}"
        if health is None or health.pid != pid or health.version != version:
            return False, f"the agent of {version} said READY but reported no health {window}"
        missing = health.missing() or ["its health"]
        told = f"neither {' nor '.join(missing)}" if len(missing) > 1 else missing[0]
        return False, f"the agent of {version} said READY but never reported {told} {window}"

    # -- recovery ---------------------------------------------------------------------------

    def _recover(self) -> Outcome | None:
        layout = self.layout
        for partial in layout.releases.glob(f"{PARTIAL_PREFIX}*"):
            shutil.rmtree(partial, ignore_errors=True)
        try:
            progress = _read_json(layout.progress.read_bytes())
        except FileNotFoundError:
            return None
        version, running = str(progress.get("to")), progress.get("from")
        earlier = progress.get("previous")
        now = layout.running_version()
        log.warning("an update to %s was stopped midway (current: %s)", version, now)
        if now != version:
            # Stopped before the switch: nothing changed but `previous` (put back).
            if earlier is not None and is_whole(layout.release(str(earlier))):
                point(layout.previous, layout.release(str(earlier)))
            layout.progress.unlink(missing_ok=True)
            reason = f"the updater stopped before switching to {version}; still on {now}"
            outcome = Outcome(FAILED, version, now, reason)
        else:
            started = self.clock()
            back = self._switch_back(version, running, earlier)
            reason = f"the updater stopped during the update to {version}; {back}"
            outcome = Outcome(
                FAILED, version, running, reason, None, {"rollback": self.clock() - started}
            )
        write_result(layout.result, outcome.as_record(layout.running_version()))
        return outcome

    # -- parts ------------------------------------------------------------------------------

    def _locked(self) -> _Lock:
        self.layout.state.mkdir(parents=True, exist_ok=True)
        self.layout.releases.mkdir(parents=True, exist_ok=True)
        return _Lock(self.layout.state / LOCK_NAME)

    def _trusted_keys(self) -> Mapping[str, Ed25519PublicKey]:
        path = self.layout.trusted_keys
        try:
            return parse_trusted_keys(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ReleaseRefused(Refusal.NO_KEYS, f"{path}: {exc}") from None

    def _fetch(self, source: str, into: Path) -> Path:
        try:
            return self._download(source, into)
        except OSError as exc:  # urllib's URLError is one too
            raise ReleaseRefused(Refusal.UNAVAILABLE, f"cannot read {source}: {exc}") from None

    def _download(self, source: str, into: Path) -> Path:
        if not source.startswith(("https://", "http://")):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"no such file {source}")
            return path
        target = into / "bundle.tar"
        with (
            urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as answer,
            target.open("wb") as out,
        ):
            total = 0
            while chunk := answer.read(1 << 20):
                total += len(chunk)
                if total > MAX_BUNDLE_BYTES:
                    raise ReleaseRefused(Refusal.MALFORMED, f"{source}: over 1 GiB")
                out.write(chunk)
        return target

    def _install(self, manifest: Manifest, payload: Path) -> None:
        layout = self.layout
        final = layout.release(manifest.version)
        partial = layout.releases / f"{PARTIAL_PREFIX}{manifest.version}-{time.time_ns()}"
        try:
            install(manifest, payload, partial, python=self.python)
            mark_whole(partial, manifest.version)
            if final.exists():  # installed before (an update that was rolled back): replaced
                old = layout.releases / f"{PARTIAL_PREFIX}old-{manifest.version}-{time.time_ns()}"
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        log.info("installed releases/%s", manifest.version)

    def _prune(self) -> None:
        """Keep the releases `current` and `previous` name; the rest only take the SD card."""
        keep = {self.layout.running_version(), self.layout.linked_version(self.layout.previous)}
        for release in self.layout.releases.iterdir():
            if release.name not in keep and not release.name.startswith("."):
                shutil.rmtree(release, ignore_errors=True)

    def last_result(self) -> dict[str, Any] | None:
        return read_result(self.layout.result)


class _Lock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: Any = None

    def __enter__(self) -> _Lock:
        self._file = self._path.open("a")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise UpdateBusy(f"another update holds {self._path}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(body), sort_keys=True).encode("utf-8") + b"\n"


def _read_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
