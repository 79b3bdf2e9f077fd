"""Scenario 9: the camera stops delivering frames, then comes back; the systemd notify protocol.

The test is the service manager: it binds the datagram socket named in NOTIFY_SOCKET (an abstract
one, as systemd's own) with WATCHDOG_USEC set, and reads what the real agent process sends. Frames
flow: READY=1, then WATCHDOG=1 every half interval. The camera fails (the lane's image is gone,
so every read raises): the `camera` fault shows in the retained status and the telemetry, the
agent retries with backoff, and the pings stop, which is what makes systemd restart a stalled
service. Frames return: the fault clears and the pings resume.

The two cards shown (one before the failure, one after) are counted from outside the agent: it
writes its indicator's pin changes to a file (GATESCAN_FAULT_PIN_LOG) and the test waits for each
card's beep there, then looks for the cards in the database by code hash. The mutation check plants
a showing that is lit and then lost (GATESCAN_AGENT_FAILPOINTS) and expects that count to fail.

A second test covers a camera read that hangs instead of failing: in-process, with a frame
source that blocks (the hardware boundary), the frame watch raises the fault and pings stop.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.app import build_agent
from device.camera.source import Frame
from device.indicator.pin_log import PIN_LOG_ENV
from device.system.failpoints import AGENT_FAILPOINTS_ENV, DROP_AFTER_LIGHT
from device.system.health import Fault
from device.system.systemd_notify import SystemdNotifier, socket_address
from firmware_config.loader import ConfigOverrides, load_config
from gatescan.testing.broker import LocalBroker
from gatescan.testing.samples import blank_frame
from server.store.database import DeviceRecord
from tests.support.fault_site import (
    Figures,
    LitRun,
    LitTally,
    LoggedProcess,
    Site,
    assert_each_showing_stored_once,
    beeps,
    distinct_cards,
    tally_lit,
)
from tests.support.lane import Lane, LaneGate, start_lane_agent, write_lane_config
from tests.support.paths import DEPLOY
from tests.support.waiting import wait_until

WATCHDOG_S = 1.0  # pings every 0.5 s while frames flow


class NotifyListener:
    """The service manager's end of NOTIFY_SOCKET: every message with the time it arrived."""

    def __init__(self) -> None:
        self.name = f"@gatescan-test-{uuid.uuid4().hex}"
        bind_to = socket_address(self.name)
        assert bind_to is not None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(bind_to)
        self._sock.settimeout(0.1)
        self._lock = threading.Lock()
        self._received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify-listener", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self._received.append((time.monotonic(), data.decode("utf-8")))

    def messages(self, prefix: str, since: float = 0.0) -> list[tuple[float, str]]:
        with self._lock:
            return [(at, m) for at, m in self._received if m.startswith(prefix) and at >= since]

    def pings(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [at for at, _ in self.messages("WATCHDOG=1", since) if at <= until]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    listener = NotifyListener()
    monkeypatch.setenv("NOTIFY_SOCKET", listener.name)  # the agent inherits the environment
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_S * 1_000_000)))
    yield listener
    listener.close()


def device(site: Site) -> DeviceRecord | None:
    return next((d for d in site.store.devices() if d.device_id == site.device_id), None)


def reports(site: Site, faults: list[str], since: float) -> bool:
    """Retained status and a telemetry received after `since` (epoch s) both say `faults`."""
    record = device(site)
    if record is None or record.telemetry is None or record.telemetry_at is None:
        return False
    fresh = record.telemetry_at.timestamp() > since
    return fresh and record.faults == faults and record.telemetry.get("faults") == faults


def show_and_see_lit(lane: Lane, agent: LoggedProcess, pin_log: Path, payload: bytes) -> None:
    """Show a code and wait for its beep in the agent's pin log (one more showing lit)."""
    before = len(beeps(pin_log))
    lane.show(payload)

    def lit() -> bool:
        if not agent.running():
            raise AssertionError(f"the agent exited:\n{agent.log_text()[-3000:]}")
        return len(beeps(pin_log)) > before

    wait_until(lit, 10, "the code's beep in the pin log")


@dataclass(frozen=True)
class CameraFailure:
    """What scenario 9 measured."""

    lit: LitTally
    silence_s: float
    recover_s: float


def camera_failure_and_return(
    site: Site,
    tmp_path: Path,
    notify_socket: NotifyListener,
    agent_env: Mapping[str, str] | None = None,
) -> CameraFailure:
    """Scenario 9's body: a card shown, the camera fails and returns, another card shown. Asserts
    the watchdog and the fault reports; returns the count of the cards, which the caller holds to
    the promise (`assert_each_showing_stored_once`)."""
    site.start_collector()
    lane = Lane(tmp_path / "lane")
    pin_log = tmp_path / "pins.log"
    agent = start_lane_agent(
        tmp_path,
        LaneGate(lane.folder),
        broker_url=site.broker.url,
        device_id=site.device_id,
        data_dir=site.data_dir,
        env={PIN_LOG_ENV: str(pin_log), **(agent_env or {})},
    )
    site.processes.append(agent)
    wait_until(lambda: notify_socket.messages("READY=1"), 30, "READY=1")
    wait_until(lambda: len(notify_socket.pings()) >= 3, 10, "watchdog pings while frames flow")
    gaps = [b - a for a, b in itertools.pairwise(notify_socket.pings())]
    assert min(gaps) >= WATCHDOG_S / 2 - 0.05, f"pings closer than half the interval: {gaps}"
    cards = distinct_cards(2, batch=9)
    show_and_see_lit(lane, agent, pin_log, cards[0])

    lane.stop_frames()
    failed_at = time.time()
    agent.wait_for_log("camera: replay folder", 10)
    fault_seen = time.monotonic()
    wait_until(lambda: reports(site, [Fault.CAMERA], failed_at), 10, "the camera fault reported")
    wait_until(lambda: notify_socket.messages("STATUS=", fault_seen - 1), 5, "STATUS= update")
    assert "faults: camera" in notify_socket.messages("STATUS=", fault_seen - 1)[-1][1]
    retry = agent.wait_for_log("camera: ", 10, occurrence=3)  # retried after 1 s, then 2 s
    assert "retrying in 4 s" in retry.text, retry.text
    silent_since = fault_seen + WATCHDOG_S / 2  # a ping already on its way may still land
    assert notify_socket.pings(since=silent_since) == [], "pings went on without frames"
    silence = time.monotonic() - max(notify_socket.pings())
    assert silence > 2 * WATCHDOG_S, f"the last ping came only {silence:.1f} s ago"

    lane.clear()
    returned = time.monotonic()
    wait_until(lambda: notify_socket.pings(since=returned), 15, "pings to resume")
    wait_until(lambda: reports(site, [], time.time() - 0.5), 10, "the camera fault cleared")
    recover_s = time.monotonic() - returned
    show_and_see_lit(lane, agent, pin_log, cards[1])
    site.wait_until_settled(cards, timeout=15)
    assert agent.stop() == 0, agent.log_text()[-3000:]
    wait_until(lambda: notify_socket.messages("STOPPING=1"), 5, "STOPPING=1")
    run = LitRun("agent", cards, len(beeps(pin_log)))
    return CameraFailure(tally_lit([run], site.stored()), silence, recover_s)


def test_camera_failure_is_reported_stops_the_watchdog_and_recovers_when_frames_return(
    site: Site,
    tmp_path: Path,
    notify_socket: NotifyListener,
    record_figures: Callable[[Figures], None],
) -> None:
    measured = camera_failure_and_return(site, tmp_path, notify_socket)
    assert measured.lit.tally.shown == 2
    assert_each_showing_stored_once(measured.lit)
    record_figures(
        Figures(
            "9",
            "Camera stops delivering frames, then returns",
            measured.lit.tally,
            measured.recover_s,
            notes=f"shown = cards seen lit on the pins, stored = found in the database by code "
            f"hash; no WATCHDOG=1 for {measured.silence_s:.1f} s of camera fault (WatchdogSec "
            f"here {WATCHDOG_S:.0f} s); recover = frames back to pings resumed and fault "
            "cleared, bounded by the retry backoff (1, 2, 4 ... 30 s)",
        )
    )


@pytest.mark.slow
def test_mutation_a_card_lit_then_dropped_before_the_journal_fails_scenario_9(
    site: Site, tmp_path: Path, notify_socket: NotifyListener
) -> None:
    """Scenario 9 with a bug planted: the card shown after the camera returns (the 2nd showing)
    is lit, then neither journaled nor held. Its count must say lost, and its check fail."""
    drop_second = {AGENT_FAILPOINTS_ENV: f"{DROP_AFTER_LIGHT}=drop:2"}
    measured = camera_failure_and_return(site, tmp_path, notify_socket, drop_second)
    assert (measured.lit.tally.shown, measured.lit.tally.stored) == (2, 1)
    assert measured.lit.tally.lost == 1, measured.lit
    with pytest.raises(AssertionError, match="lost"):
        assert_each_showing_stored_once(measured.lit)


class HangingCamera:
    """A camera whose read blocks while `hung` is set (a driver stuck in the kernel)."""

    def __init__(self) -> None:
        self.hung = threading.Event()
        self.released = threading.Event()

    def read(self) -> Frame:
        if self.hung.is_set():
            self.released.wait()
        time.sleep(0.02)  # a camera's frame period: the next frame is not ready before it
        return blank_frame((160, 120))

    def close(self) -> None:
        self.released.set()


def test_a_camera_read_that_hangs_raises_the_fault_and_stops_the_pings(
    broker: LocalBroker, tmp_path: Path
) -> None:
    listener = NotifyListener()
    lane = Lane(tmp_path / "lane")  # only for the config: the hanging camera stands in for it
    config = load_config(
        write_lane_config(tmp_path / "gate.toml", LaneGate(lane.folder)),
        overrides=ConfigOverrides(broker=broker.url, data_dir=tmp_path / "gate"),
        env={},
    )
    camera = HangingCamera()
    faults: list[list[str]] = []
    agent = build_agent(
        config,
        source=camera,
        notifier=SystemdNotifier(listener.name, watchdog_seconds=WATCHDOG_S),
        frame_stall_s=1.0,
    )
    agent.health.watch(lambda health: faults.append(health.faults))
    stop = threading.Event()
    running = threading.Thread(target=agent.run, args=(stop,), name="agent")
    running.start()
    try:
        wait_until(lambda: len(listener.pings()) >= 2, 10, "pings while frames flow")
        camera.hung.set()
        wait_until(lambda: [Fault.CAMERA] in faults, 5, "the frame watch to raise the fault")
        hung_at = time.monotonic()
        assert listener.pings(since=hung_at) == []
        camera.hung.clear()
        camera.released.set()
        wait_until(lambda: faults[-1] == [], 5, "the fault to clear")
        wait_until(lambda: listener.pings(since=hung_at), 5, "pings to resume")
    finally:
        stop.set()
        camera.released.set()
        running.join(timeout=20)
        listener.close()
    assert not running.is_alive()


def test_the_agent_unit_waits_for_ready_and_restarts_a_silent_agent() -> None:
    unit = DEPLOY / "systemd" / "gatescan-agent.service"
    settings = dict(
        line.split("=", 1)
        for line in unit.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert settings["NotifyAccess"] == "main"
    assert settings["WatchdogSec"] == "30"
    assert settings["Restart"] == "always"
