"""Wiring only: build a gate agent from its config. Reads like the table of contents of a gate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from device.camera import FrameSource
from device.camera.opencv import OpenCVSource
from device.camera.picamera2 import Picamera2Source
from device.camera.replay import ReplaySource
from device.clock import Clock, SystemClock, read_boot_id
from device.debounce import Debounce
from device.decode import make_decoder
from device.events import EventBuilder
from device.health import Health
from device.indicator import GpioIndicator, Indicator, IndicatorPins, TeeIndicator
from device.journal import Journal
from device.policy import Policy
from device.scanner import Scan, Scanner, ScanStats
from device.uplink import Uplink
from firmware_config import GateConfig, OpenCVCamera, Picamera2Camera, ReplayCamera
from gatescan import __version__
from protocol import Telemetry

log = logging.getLogger("gatescan.agent")


class Agent:
    """A running gate: frame loop in the caller's thread, MQTT and telemetry in the background."""

    def __init__(
        self,
        config: GateConfig,
        *,
        source: FrameSource,
        scanner: Scanner,
        uplink: Uplink,
        journal: Journal,
        indicator: Indicator,
        health: Health,
        clock: Clock,
    ) -> None:
        self.config = config
        self.source = source
        self.scanner = scanner
        self.uplink = uplink
        self.journal = journal
        self.indicator = indicator
        self.health = health
        self.clock = clock
        self._started = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Scan until `stop` is set, then shut down cleanly (status `offline`, files closed)."""
        self.indicator.set_state(self.health.indicator_state())
        self.uplink.start()
        telemetry = threading.Thread(
            target=self._telemetry_loop, args=(stop,), name="telemetry", daemon=True
        )
        telemetry.start()
        try:
            self.scanner.run(stop)
        finally:
            stop.set()
            telemetry.join(timeout=2)
            self.close()

    def close(self) -> None:
        self.uplink.stop()
        self.source.close()
        self.indicator.close()
        self.journal.close()

    def telemetry(self) -> Telemetry:
        fps, decode_ms = self.scanner.stats.snapshot()
        return Telemetry(
            ts=self.clock.now(),
            uptime_s=round(time.monotonic() - self._started, 1),
            fps=round(fps, 2),
            decode_ms=round(decode_ms, 2),
            outbox_depth=self.journal.outbox_depth(),
            clock_synced=self.clock.is_synced(),
            version=__version__,
            faults=self.health.faults,
        )

    def _telemetry_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.config.mqtt.telemetry_interval):
            self.uplink.publish_telemetry(self.telemetry())


def build_agent(
    config: GateConfig,
    *,
    pin_factory: Any = None,
    extra_indicators: Sequence[Indicator] = (),
    on_scan: Callable[[Scan], None] = lambda scan: None,
    clock: Clock | None = None,
) -> Agent:
    clock = clock or SystemClock()
    boot_id = read_boot_id()
    journal = Journal(Path(config.data_dir))
    indicator = build_indicator(config, pin_factory, extra_indicators)
    health = Health()
    uplink = build_uplink(config, journal, boot_id, health)
    health_changed(health, indicator, uplink)
    source = open_source(config)
    scanner = Scanner(
        source=source,
        decoder=make_decoder(config.decoder.backend),
        debounce=Debounce(config.decoder.repeat_window),
        policy=Policy(config.policy.mode, config.policy.accept),
        indicator=indicator,
        journal=journal,
        builder=EventBuilder(
            device_id=config.device_id,
            site_id=config.site_id,
            direction=config.direction,
            boot_id=boot_id,
            clock=clock,
            record_raw_text=config.policy.record_raw_text,
        ),
        health=health,
        notify_uplink=uplink.event_recorded,
        on_scan=on_scan,
        stats=ScanStats(),
    )
    return Agent(
        config,
        source=source,
        scanner=scanner,
        uplink=uplink,
        journal=journal,
        indicator=indicator,
        health=health,
        clock=clock,
    )


def health_changed(health: Health, indicator: Indicator, uplink: Uplink) -> None:
    """Every change of faults or link shows on the indicator and in the retained status."""

    def on_change(current: Health) -> None:
        state = current.indicator_state()
        indicator.set_state(state)
        uplink.set_faults(current.faults)
        log.info("indicator: %s (faults: %s)", state.value, ", ".join(current.faults) or "none")

    health.watch(on_change)


def build_uplink(config: GateConfig, journal: Journal, boot_id: str, health: Health) -> Uplink:
    password = config.mqtt.password()
    return Uplink(
        device_id=config.device_id,
        broker_url=config.mqtt.broker,
        journal=journal,
        version=__version__,
        boot_id=boot_id,
        keepalive=config.mqtt.keepalive,
        resend_after=config.mqtt.resend_after,
        username=broker_user(config, password),
        password=password,
        on_connection_change=health.set_online,
    )


def broker_user(config: GateConfig, password: str | None) -> str | None:
    """A gate logs in as its device id unless told otherwise: the broker ACL keys on it (%u)."""
    if config.mqtt.username:
        return config.mqtt.username
    return config.device_id if password else None


def build_indicator(config: GateConfig, pin_factory: Any, extra: Sequence[Indicator]) -> Indicator:
    pins = config.indicator
    if not pins.enabled:
        return TeeIndicator(*extra)
    gpio = GpioIndicator(
        IndicatorPins(
            green=pins.green,
            red=pins.red,
            buzzer=pins.buzzer,
            relay=pins.relay,
            active_high=pins.active_high,
        ),
        pin_factory=pin_factory if pin_factory is not None else default_pin_factory(),
        relay_seconds=pins.relay_seconds,
    )
    return TeeIndicator(gpio, *extra)


def default_pin_factory() -> Any:
    """gpiozero's own choice on a Raspberry Pi; its MockFactory anywhere else."""
    if is_raspberry_pi():
        return None
    from gpiozero.pins.mock import MockFactory

    log.info("not a Raspberry Pi: the indicator drives gpiozero MockFactory pins")
    return MockFactory()


def is_raspberry_pi(model_file: Path = Path("/proc/device-tree/model")) -> bool:
    try:
        return "Raspberry Pi" in model_file.read_text(errors="replace")
    except OSError:
        return False


def open_source(config: GateConfig) -> FrameSource:
    camera = config.camera
    if isinstance(camera, ReplayCamera):
        return ReplaySource(Path(camera.folder), fps=camera.fps, hold=camera.hold, loop=camera.loop)
    if isinstance(camera, OpenCVCamera):
        return OpenCVSource(camera.target, width=camera.width, height=camera.height, fps=camera.fps)
    if isinstance(camera, Picamera2Camera):
        return Picamera2Source(width=camera.width, height=camera.height, fps=camera.fps)
    raise TypeError(f"unknown camera config {camera!r}")
