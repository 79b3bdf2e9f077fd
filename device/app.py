"""Wiring only: build a gate agent from its config. Reads like the table of contents of a gate.

The frame loop decodes in the caller's thread and captures in a thread of its own (the two joined
by a one-slot handoff, see device/frames/). Besides, a running agent has two small threads:
telemetry, and a frame watch that raises the `camera` fault when no frame has been decoded for
FRAME_STALL_S (a camera read that hangs raises nothing). It tells systemd READY=1 once
started, STATUS= on every change of faults or link, and STOPPING=1 on the way out; WATCHDOG=1
goes out from the frame loop only (see device/system/systemd_notify.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from device.camera.opencv import OpenCVSource
from device.camera.picamera2 import Picamera2Source
from device.camera.replay import ReplaySource
from device.camera.source import FrameSource, ReopeningSource
from device.config_error import CONFIG_FAULT
from device.decode.backends import make_decoder
from device.decode.base import Decoder
from device.enrolment.client import enrol
from device.enrolment.identity import StoredIdentity, load_identity, store_identity
from device.frames.framing import Framing
from device.frames.scene import SceneWatch
from device.frames.stats import ScanStats
from device.indicator.base import Indicator, Output, Release, TeeIndicator, background_state
from device.indicator.gpio import GpioIndicator, IndicatorPins
from device.indicator.patterns import (
    IDENTIFY_PATTERN,
    IDENTIFY_SECONDS,
    SELFTEST_ORDER,
    duration,
    selftest_pattern,
)
from device.journal.journal import Journal
from device.live_config import LiveConfig, Load, kept_push
from device.presence_feed import passages_into, presence_follows, remember_passages
from device.preview.local import LocalPreview, socket_path
from device.preview.remote import RemotePreview
from device.preview.tap import PreviewTap
from device.scanner import Scan, Scanner, ScanParts
from device.setup import SetupMode
from device.site_policy.held import HeldPolicy
from device.site_policy.holder import PolicyHolder
from device.system.clock import Clock, clock_from_environment, read_boot_id
from device.system.facts import SystemFacts
from device.system.failpoints import Failpoints
from device.system.health import Fault, Health, LinkState
from device.system.log_ring import RecentLogs
from device.system.systemd_notify import SystemdNotifier
from device.update.health import HealthBeacon
from device.update.layout import Layout
from device.update.requests import BadRequest, remote_update, telemetry_result
from device.uplink.commands import Action, CommandGate, Outcome
from device.uplink.gate_logs import LogUplink, wire_line
from device.uplink.link import Placement, Uplink
from device.uplink.status_report import StatusReport
from device.verdict.debounce import Debounce
from device.verdict.events import EventBuilder
from device.verdict.policy import Policy, PolicyMode, access_problem
from device.verdict.presence import Presence
from firmware_config.loader import config_with_pushed
from firmware_config.schema import (
    CameraConfig,
    GateConfig,
    OpenCVCamera,
    Picamera2Camera,
    ReplayCamera,
    config_hash,
)
from protocol.enrolment import EnrolmentCode, EnrolmentGrant
from protocol.messages import MAX_LOG_LINES, Command, CommandAnswer, Telemetry
from protocol.release import __version__

log = logging.getLogger("gatescan.agent")

# No frame for this long is a camera fault even when the read has not failed (yet): any camera
# delivers at least one frame a second (fps >= 1), and a frame's decode takes well under one.
FRAME_STALL_S = 5.0
# The last telemetry, with the link's state, kept in the data dir at every telemetry interval
# for `gatescan doctor` to read while the agent holds the camera and pins (not fsync'd: a report).
LAST_TELEMETRY_FILE = "last_telemetry.json"


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
        notifier: SystemdNotifier,
        frame_stall_s: float = FRAME_STALL_S,
        site_policy: PolicyHolder | None = None,
        facts: SystemFacts | None = None,
        preview: PreviewTap | None = None,
        recent_logs: RecentLogs | None = None,
        log_uplink: LogUplink | None = None,
        update_result: Path | None = None,
    ) -> None:
        self.config = config
        # The updater's result file (device/update/layout.py), carried in the telemetry.
        self.update_result = update_result or Layout().result
        self.preview = preview or PreviewTap()
        self.local_preview = LocalPreview(self.preview, socket_path(Path(config.data_dir)))
        self.recent_logs = recent_logs
        self.log_uplink = log_uplink
        # Set by the `restart` command: the frame watch stops the agent, whose process then
        # exits for systemd's Restart=always to start it again.
        self.restart = threading.Event()
        # Its settings changed without a restart (push_config, reload_config, SIGHUP).
        self.live: LiveConfig | None = None
        self.facts = facts or SystemFacts()
        self.config_hash = config_hash(config)
        self.site_policy = site_policy or PolicyHolder("", None)
        self.source = source
        self.scanner = scanner
        self.uplink = uplink
        self.journal = journal
        self.indicator = indicator
        self.health = health
        self.clock = clock
        self.notifier = notifier
        self.frame_stall_s = frame_stall_s
        self._started = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        """Scan until `stop` is set, then shut down cleanly (status `offline`, files closed)."""
        self.indicator.set_state(background_state(self.health))
        self.uplink.start()
        self.local_preview.start()  # `gatescan preview` on the gate asks through it
        threads = [
            threading.Thread(target=loop, args=(stop,), name=name, daemon=True)
            for name, loop in (("telemetry", self._telemetry_loop), ("frames", self._watch_frames))
        ]
        if self.log_uplink is not None:
            threads.append(
                threading.Thread(target=self.log_uplink.run, args=(stop,), name="logs", daemon=True)
            )
        for thread in threads:
            thread.start()
        self.notifier.ready(describe(self.health))
        try:
            self.scanner.run(stop)
        finally:
            self.notifier.stopping()
            stop.set()
            for thread in threads:
                thread.join(timeout=2)
            self.close()

    def close(self) -> None:
        held = self.scanner.recorder.retry_now()
        if held:
            log.error("journal: %d events held in memory are lost at shutdown", held)
        self.local_preview.close()
        self.preview.close()
        self.uplink.stop()
        self.source.close()
        self.indicator.close()
        self.journal.close()
        self.site_policy.close()
        self.notifier.close()
        if self.recent_logs is not None:
            logging.getLogger().removeHandler(self.recent_logs)

    def telemetry(self) -> Telemetry:
        stats = self.scanner.stats.snapshot()
        held = self.site_policy.read()
        return Telemetry(
            ts=self.clock.now(),
            uptime_s=round(time.monotonic() - self._started, 1),
            fps=round(stats.fps, 2),
            decode_ms=round(stats.decode_ms, 2),
            frames_dropped=stats.dropped,
            frames_with_code=stats.frames_with_code,
            frames_read=stats.frames_read,
            # Not yet at the collector: the outbox, and events held in memory while the
            # journal cannot be written.
            outbox_depth=self.journal.outbox_depth() + self.scanner.recorder.held,
            clock_synced=self.clock.is_synced(),
            version=__version__,
            faults=self.health.faults,
            rejected_total=self.journal.rejected_count(),
            fire_alarm_releases=self.health.releases(Release.FIRE_ALARM),
            button_releases=self.health.releases(Release.BUTTON),
            dashboard_releases=self.health.releases(Release.DASHBOARD),
            **self.facts.telemetry_fields(Path(self.config.data_dir)),
            config_hash=self.config_hash,
            policy_version=held.version,
            policy_key_ids=held.key_ids[:64] if held.manifest is not None else None,
            list_versions=held.list_versions() if held.manifest is not None else None,
            update_result=telemetry_result(self.update_result),
        )

    def _telemetry_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.config.mqtt.telemetry_interval):
            try:
                telemetry = self.telemetry()
                self.uplink.publish_telemetry(telemetry)
                keep_last_telemetry(Path(self.config.data_dir), telemetry, self.health.link)
            except Exception:  # telemetry is a report: its failure must not end the reports
                log.exception("telemetry not published")

    def _watch_frames(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            if self.restart.is_set():
                log.warning("restart asked for: the agent stops, and systemd starts it again")
                stop.set()
                return
            self.health.set_clock_synced(self.clock.is_synced())
            stalled = self.scanner.seconds_since_frame()
            if stalled > self.frame_stall_s and Fault.CAMERA not in self.health.faults:
                log.error("camera: no frame for %.0f s", stalled)
                self.health.set_fault(Fault.CAMERA)


def keep_last_telemetry(data_dir: Path, telemetry: Telemetry, link: LinkState) -> None:
    """LAST_TELEMETRY_FILE: {"link": "up", "telemetry": {...}}, replaced whole (a new file
    renamed over it), not fsync'd: a report for `gatescan doctor`, not a record."""
    record = b'{"link":"%s","telemetry":%s}' % (link.value.encode("ascii"), telemetry.to_json())
    path = data_dir / LAST_TELEMETRY_FILE
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(record)
        temp.replace(path)
    except OSError as error:
        log.warning("cannot keep the last telemetry in %s: %s", path, error.strerror)


def build_agent(
    config: GateConfig,
    *,
    pin_factory: Any = None,
    extra_indicators: Sequence[Indicator] = (),
    on_scan: Callable[[Scan], None] = lambda scan: None,
    clock: Clock | None = None,
    notifier: SystemdNotifier | None = None,
    source: FrameSource | None = None,
    frame_stall_s: float = FRAME_STALL_S,
    facts: SystemFacts | None = None,
    load: Load | None = None,
    update_result: Path | None = None,
) -> Agent:
    """The gate `config` describes. The keyword arguments stand in for hardware and the system
    (tests, the demo); each defaults to the real thing, or to what the environment asks for
    (GATESCAN_FAULT_CLOCK, GATESCAN_FAULT_PIN_LOG, GATESCAN_AGENT_FAILPOINTS, NOTIFY_SOCKET).
    `load(pushed)`: the whole config as after a reboot with these pushed settings (its file
    read again, the flags, the identity), for `push_config`, `reload_config` and SIGHUP
    (device/live_config.py); None: `config` is all there is (no file), the push lies over it.
    `update_result`: the updater's result file (None: /var/lib/gatescan-updater/result.json)."""
    failpoints = Failpoints.from_environment(os.environ)  # first: a typo fails before any I/O
    clock = clock or clock_from_environment(os.environ)
    notifier = notifier or SystemdNotifier.from_environment()
    boot_id = read_boot_id()
    journal = Journal(
        Path(config.data_dir),
        history_max_entries=config.journal.history_max_entries,
        retention_days=config.journal.retention_days,
        clock=clock,
    )
    health = Health()
    gpio = build_gpio(config, pin_factory, on_release=door_released(health))
    indicator = TeeIndicator(*([gpio] if gpio is not None else []), *extra_indicators)
    # Known before the first light: a gate whose clock is not synchronised never shows "running"
    # for the second before its frame watch first reads the clock.
    health.set_clock_synced(clock.is_synced())
    site_policy = PolicyHolder(config.site_id, Path(config.data_dir))
    recent_logs = RecentLogs()
    logging.getLogger().addHandler(recent_logs)
    restart = threading.Event()
    answers: list[Callable[[CommandAnswer], object]] = []
    applied: list[Callable[[GateConfig], None]] = []  # the agent's, once it is made

    def apply_live(fresh: GateConfig) -> None:
        for apply in applied:
            apply(fresh)

    live = LiveConfig(
        config,
        load=load or (lambda pushed: config_with_pushed(config, pushed)),
        apply=apply_live,
        data_dir=Path(config.data_dir),
        pushed=kept_push(Path(config.data_dir)),
    )
    commands = CommandGate(
        release_door=door_release(gpio),
        now=clock.now,
        actions=gate_actions(gpio, recent_logs, restart, live),
        answer=lambda answer: [send(answer) for send in answers],
        device_id=config.device_id,
    )
    preview = PreviewTap(region=framing_for(config.camera).region)
    uplinks: list[Uplink] = []  # the preview's frames go out on the uplink made next
    requests = RemotePreview(
        preview, publish=lambda payload: uplinks[0].publish_preview(payload), now=clock.now
    )
    beacon = HealthBeacon(Path(config.data_dir), __version__)  # for the updater
    health.watch(lambda current: beacon.link(current.online))
    uplink = build_uplink(
        config, journal, boot_id, health, site_policy, commands.handle, requests.handle
    )
    uplinks.append(uplink)
    answers.append(uplink.publish_answer)
    log_uplink = LogUplink(config.device_id, uplink.publish_logs)
    recent_logs.follow(log_uplink.heard)
    health_changed(health, indicator, uplink, notifier)
    modes = [config.policy.mode]  # the running mode, changed by a config applied live
    recheck_policy = policy_changed(lambda: modes[-1], site_policy, health, uplink)
    uplink.set_faults(health.faults)  # a fire alarm already active as the gate started
    presence = Presence()
    presence_follows(site_policy, presence, config.device_id)
    remember_passages(presence, site_policy, journal, clock)
    source = source or ReopeningSource(lambda: open_source(config))

    def parts_for(settings: GateConfig, decoder: Decoder) -> ScanParts:
        """The frame loop's parts a config decides (made again when one is applied live)."""
        return ScanParts(
            decoder=decoder,
            policy=Policy(
                settings.policy.mode,
                settings.policy.accept,
                held=site_policy.read,
                now=clock.now,
                presence=presence,
                direction=settings.direction,
            ),
            builder=EventBuilder(
                device_id=settings.device_id,
                site_id=settings.site_id,
                direction=settings.direction,
                boot_id=boot_id,
                clock=clock,
                record_raw_text=settings.policy.record_raw_text,
            ),
            framing=framing_for(settings.camera),
            repeat_window=settings.decoder.repeat_window,
        )

    parts = parts_for(config, make_decoder(config.decoder.backend))
    scanner = Scanner(
        source=source,
        decoder=parts.decoder,
        debounce=Debounce(parts.repeat_window),
        policy=parts.policy,
        indicator=indicator,
        journal=journal,
        builder=parts.builder,
        health=health,
        notify_uplink=uplink.event_recorded,
        on_scan=passages_into(presence, site_policy, then=on_scan),
        on_progress=progress_reported(notifier, beacon),
        stats=ScanStats(),
        framing=parts.framing,
        scene_watch=SceneWatch(),
        failpoints=failpoints,
        frame_tap=preview.offer,
    )
    agent = Agent(
        config,
        source=source,
        scanner=scanner,
        uplink=uplink,
        journal=journal,
        indicator=indicator,
        health=health,
        clock=clock,
        notifier=notifier,
        frame_stall_s=frame_stall_s,
        site_policy=site_policy,
        facts=facts,
        preview=preview,
        recent_logs=recent_logs,
        log_uplink=log_uplink,
        update_result=update_result,
    )
    agent.restart = restart
    agent.live = live

    def apply(fresh: GateConfig) -> None:
        """A config changed live (device/live_config.py): new parts for the frame loop from its
        next frame, the preview's region, the policy fault for the mode, the telemetry's."""
        running = agent.config
        same = fresh.decoder.backend == running.decoder.backend
        decoder = scanner.decoder if same else make_decoder(fresh.decoder.backend)
        changed = parts_for(fresh, decoder)
        scanner.change_parts(changed)
        preview.region = changed.framing.region
        agent.config, agent.config_hash = fresh, config_hash(fresh)
        modes.append(fresh.policy.mode)
        recheck_policy()

    applied.append(apply)
    return agent


def gate_actions(
    gpio: GpioIndicator | None,
    recent_logs: RecentLogs,
    restart: threading.Event,
    live: LiveConfig,
) -> dict[str, Action]:
    """The remote commands' handlers (device/uplink/commands.py checked each command first).
    Each returns at once, on paho's thread: the patterns play on the indicator's thread, the
    restart happens on the frame watch's, a config applied live is taken by the frame loop
    between two frames, and scanning goes on throughout."""

    def no_gpio() -> Outcome:
        return Outcome("refused", "this gate has no GPIO outputs (indicator.enabled is false)")

    def identify(_command: Command, _later: Callable[[Outcome], None]) -> Outcome:
        if gpio is None:
            return no_gpio()
        gpio.play(IDENTIFY_PATTERN)
        return Outcome("done", f"blinking green, red, dark for {IDENTIFY_SECONDS:g} s")

    def selftest(command: Command, later: Callable[[Outcome], None]) -> Outcome:
        if gpio is None:
            return no_gpio()
        include_relay = command.args.get("include_relay") is True
        pattern = selftest_pattern(gpio.outputs, include_relay)
        tested = [o.value for o in SELFTEST_ORDER if o in gpio.outputs]
        if not include_relay:
            tested = [name for name in tested if name != Output.RELAY.value]
        gpio.play(pattern)
        timer = threading.Timer(
            duration(pattern), later, args=(Outcome("done", "played " + ", ".join(tested)),)
        )
        timer.daemon = True
        timer.start()
        relay_note = (
            ""
            if include_relay or Output.RELAY not in gpio.outputs
            else ("; the door relay left out (include_relay not given)")
        )
        return Outcome("accepted", f"playing {', '.join(tested)} in turn{relay_note}")

    def restart_now(_command: Command, _later: Callable[[Outcome], None]) -> Outcome:
        # After the answer is queued (the caller sends it once this returns): the agent's
        # shutdown publishes its offline status behind it and waits for the broker.
        timer = threading.Timer(0.2, restart.set)
        timer.daemon = True
        timer.start()
        return Outcome("accepted", "restarting: systemd starts the agent again")

    def send_logs(command: Command, _later: Callable[[Outcome], None]) -> Outcome:
        asked = command.args.get("lines", MAX_LOG_LINES)
        limit = asked if isinstance(asked, int) and not isinstance(asked, bool) else MAX_LOG_LINES
        lines = tuple(wire_line(line) for line in recent_logs.recent(min(limit, MAX_LOG_LINES)))
        return Outcome("done", f"{len(lines)} recent warnings and errors", lines)

    def update(command: Command, _later: Callable[[Outcome], None]) -> Outcome:
        # The updater (root, its own unit) does the work and may restart this agent; its
        # result comes in the telemetry's update_result.
        args = command.args
        try:
            detail = remote_update(
                Path(live.running.data_dir),  # never changed live
                args.get("version"),
                command.source,
                __version__,
                args.get("allow_downgrade"),
            )
        except BadRequest as refused:
            return Outcome("refused", str(refused))
        return Outcome("accepted", detail)

    return {
        "identify": identify,
        "selftest_gpio": selftest,
        "reload_config": lambda _command, _later: live.reload(),
        "push_config": lambda command, _later: live.push(command.settings),
        "restart": restart_now,
        "send_logs": send_logs,
        "update": update,
    }


def policy_changed(
    mode: Callable[[], PolicyMode], holder: PolicyHolder, health: Health, uplink: Uplink
) -> Callable[[], None]:
    """Every change of the site policy held: the `policy` fault when access mode can grant
    nobody (shown by the light, the status and systemd), and the status's policy version.
    Returns the same check, for a change of `mode` (a config applied live)."""

    def on_change(held: HeldPolicy) -> None:
        problem = access_problem(mode(), held)
        if problem is not None and Fault.POLICY not in health.faults:
            # Before a gate's first policy this is the wait for it (a warning); after, an error.
            say = log.warning if held.manifest is None else log.error
            say("%s: the door stays shut until the site's policy names someone", problem)
        elif problem is None and Fault.POLICY in health.faults:
            log.warning("site policy version %s: access mode can grant again", held.version)
        health.set_fault(Fault.POLICY, problem is not None)
        uplink.policy_changed()

    holder.watch(on_change)
    on_change(holder.read())
    return lambda: on_change(holder.read())


def progress_reported(notifier: SystemdNotifier, beacon: HealthBeacon) -> Callable[[], None]:
    """A processed frame pings the watchdog and, the first time, tells the updater."""

    def on_progress() -> None:
        notifier.watchdog()
        beacon.frame_processed()

    return on_progress


def health_changed(
    health: Health, indicator: Indicator, uplink: Uplink, notifier: SystemdNotifier
) -> None:
    """Every change of faults or link shows on the indicator, in the retained status and in
    `systemctl status`."""

    def on_change(current: Health) -> None:
        state = background_state(current)
        indicator.set_state(state)
        uplink.set_faults(current.faults)
        notifier.status(describe(current))
        log.info("indicator: %s (faults: %s)", state.value, ", ".join(current.faults) or "none")

    health.watch(on_change)


def describe(health: Health) -> str:
    """One line for people: 'scanning, online' or 'scanning, offline; faults: camera'."""
    link = "online" if health.online else _LINK_WORDS[health.link]
    if health.online and not health.clock_synced:
        link += ", clock not synchronised"
    faults = health.faults
    return f"scanning, {link}" + (f"; faults: {', '.join(faults)}" if faults else "")


_LINK_WORDS = {
    LinkState.UP: "online",
    LinkState.CONNECTING: "offline",
    LinkState.UNREACHABLE: "offline (broker unreachable)",
    LinkState.NO_NETWORK: "offline (no network)",
    LinkState.REFUSED: "offline (the broker refused this gate's credentials or certificate)",
}


def build_uplink(
    config: GateConfig,
    journal: Journal,
    boot_id: str,
    health: Health,
    site_policy: PolicyHolder | None = None,
    on_command: Callable[[bytes], object] | None = None,
    on_preview_request: Callable[[bytes], object] | None = None,
) -> Uplink:
    password = config.mqtt.password()
    if config.mqtt.broker is None:
        raise ValueError("no broker: a gate without one enrols first (setup mode)")
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
        tls=config.mqtt.tls,
        on_connection_change=health.set_online,
        on_link_problem=health.set_link,
        placement=Placement(config.site_id, config.location, config.direction),
        on_policy_message=site_policy.handle if site_policy is not None else None,
        policy_version=_version_of(site_policy),
        on_command=on_command,
        on_preview_request=on_preview_request,
    )


def _version_of(holder: PolicyHolder | None) -> Callable[[], int | None]:
    if holder is None:
        return lambda: None
    return lambda: holder.read().version


def broker_user(config: GateConfig, password: str | None) -> str | None:
    """A gate logs in as its device id unless told otherwise: the broker ACL keys on it (%u)."""
    if config.mqtt.username:
        return config.mqtt.username
    return config.device_id if password else None


def build_indicator(
    config: GateConfig,
    pin_factory: Any,
    extra: Sequence[Indicator],
    *,
    on_release: Callable[[Release, bool], None] = lambda release, active: None,
) -> Indicator:
    """The LEDs, buzzer, door relay and the door's inputs (each release told to `on_release`),
    then the `extra` indicators."""
    gpio = build_gpio(config, pin_factory, on_release=on_release)
    return TeeIndicator(*([gpio] if gpio is not None else []), *extra)


def build_gpio(
    config: GateConfig,
    pin_factory: Any,
    *,
    on_release: Callable[[Release, bool], None] = lambda release, active: None,
) -> GpioIndicator | None:
    """The LEDs, buzzer, door relay and the door's inputs on GPIO; None when the config turns
    them off."""
    pins = config.indicator
    if not pins.enabled:
        return None
    return GpioIndicator(
        IndicatorPins(
            green=pins.green,
            red=pins.red,
            buzzer=pins.buzzer,
            relay=pins.relay,
            active_high=pins.active_high,
            door_fail=pins.door.fail,
            fire_alarm=pins.door.fire_alarm_pin,
            release_button=pins.door.release_button_pin,
        ),
        pin_factory=pin_factory if pin_factory is not None else default_pin_factory(),
        relay_seconds=pins.relay_seconds,
        on_release=on_release,
    )


def door_release(gpio: GpioIndicator | None) -> Callable[[Command], bool]:
    """A fresh release command (device/uplink/commands.py checked it) releases the door for
    `relay_seconds`, as the guard's button does: logged and counted (`door_released`)."""

    def release(_command: Command) -> bool:
        return gpio is not None and gpio.release(Release.DASHBOARD)

    return release


def door_released(health: Health) -> Callable[[Release, bool], None]:
    """Each release of the door no verdict granted is counted (telemetry); a fire alarm is the
    `fire_alarm` flag in the retained status (and the light over all others) while it lasts."""

    def on_release(release: Release, active: bool) -> None:
        if active:
            health.count_release(release)
        if release is Release.FIRE_ALARM:
            health.set_fault(Fault.FIRE_ALARM, active)

    return on_release


def default_pin_factory(env: Mapping[str, str] = os.environ) -> Any:
    """gpiozero's own choice on a Raspberry Pi; its MockFactory anywhere else, whose pins write
    each change to a file when GATESCAN_FAULT_PIN_LOG names one (device/indicator/pin_log.py)."""
    if is_raspberry_pi():
        return None
    from device.indicator.pin_log import mock_pin_factory  # imports gpiozero's mock pins

    log.info("not a Raspberry Pi: the indicator drives gpiozero MockFactory pins")
    return mock_pin_factory(env)


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
        return Picamera2Source(
            width=camera.width,
            height=camera.height,
            fps=camera.fps,
            lores_size=lores_size(camera),
            focus=camera.focus,
        )
    raise TypeError(f"unknown camera config {camera!r}")


def framing_for(camera: CameraConfig) -> Framing:
    """The region and scale the decode thread applies; the Pi camera's ISP scales for free."""
    region = (camera.roi[0], camera.roi[1], camera.roi[2], camera.roi[3]) if camera.roi else None
    scale = 1.0 if isinstance(camera, Picamera2Camera) else camera.decode_scale
    return Framing(region=region, scale=scale)


def lores_size(camera: Picamera2Camera) -> tuple[int, int]:
    """The Pi camera's lores stream at the decode scale (even sizes, as YUV420 needs)."""

    def even(pixels: float) -> int:
        return max(2, int(pixels) // 2 * 2)

    return even(camera.width * camera.decode_scale), even(camera.height * camera.decode_scale)


# --- setup mode and the enrolled identity ---------------------------------------------------------


def needs_enrolment(config: GateConfig, identity: StoredIdentity | None) -> bool:
    """Setup mode is exactly this: no broker given (flag or config) and no stored identity."""
    return config.mqtt.broker is None and identity is None


def build_setup(
    config: GateConfig,
    *,
    code_file: Path | None,
    notifier: SystemdNotifier,
    pin_factory: Any = None,
    extra_indicators: Sequence[Indicator] = (),
    source: FrameSource | None = None,
    hardware: str = "",
) -> SetupMode:
    """A gate in setup mode: its camera, decoder and light, the enrolment exchange, the identity
    kept in its data dir. The caller closes it (`close()`) before building the agent."""
    data_dir = Path(config.data_dir)

    def exchange(code: EnrolmentCode) -> EnrolmentGrant:
        return enrol(code, agent_version=__version__, hardware=hardware or hardware_model())

    def keep(grant: EnrolmentGrant) -> StoredIdentity:
        return store_identity(data_dir, grant)

    return SetupMode(
        source=source or ReopeningSource(lambda: open_source(config)),
        decoder=make_decoder(config.decoder.backend),
        indicator=build_indicator(config, pin_factory, extra_indicators),
        health=Health(),
        exchange=exchange,
        keep=keep,
        on_progress=notifier.watchdog,
        code_file=code_file,
    )


def with_identity(config: GateConfig, identity: StoredIdentity) -> GateConfig:
    """The gate as its grant says: who it is (device id, site, location, direction) and how it
    reaches its broker (URL, user, password, CA) come from the grant and win over the config
    and flags, which keep everything else (camera, policy, pins, keepalive...). A config that
    names something else for those is logged once: the registry on the server is the truth."""
    grant = identity.grant
    ignored = [key for key in _GRANTED_MQTT_KEYS if key in config.mqtt.model_fields_set]
    ignored = [f"mqtt.{key}" for key in ignored]
    if "device_id" in config.model_fields_set and config.device_id != grant.device_id:
        ignored.insert(0, "device_id")
    if ignored:
        log.warning("enrolled as %s: the config's %s ignored", grant.device_id, ", ".join(ignored))
    mqtt_config = config.mqtt.model_copy(
        update={
            "broker": grant.broker_url,
            "username": grant.username,
            "password_file": None,
            "ca_file": identity.ca_file,
            "cert_file": None,
            "key_file": None,
        }
    ).with_password(grant.password)
    return config.model_copy(
        update={
            "device_id": grant.device_id,
            "site_id": grant.site_id,
            "location": grant.location,
            "direction": grant.direction,
            "mqtt": mqtt_config,
        }
    )


_GRANTED_MQTT_KEYS = ("broker", "username", "password_file", "ca_file", "cert_file", "key_file")


def hardware_model(model_file: Path = Path("/proc/device-tree/model")) -> str:
    """The board's model line ('Raspberry Pi 5 Model B Rev 1.0'), told to the enrolment server."""
    try:
        return model_file.read_text(errors="replace").strip("\x00\n ")[:200]
    except OSError:
        return ""


def build_status_report(config: GateConfig) -> StatusReport | None:
    """The `config` fault in the retained status of a gate whose config is bad, when the broker
    part of it (or the identity in its data dir) says how to reach the broker; else None."""
    identity = load_identity(Path(config.data_dir))
    if identity is not None:
        config = with_identity(config, identity)
    if config.mqtt.broker is None:
        return None
    password = config.mqtt.password()
    return StatusReport(
        device_id=config.device_id,
        broker_url=config.mqtt.broker,
        faults=[CONFIG_FAULT],
        version=__version__,
        boot_id=read_boot_id(),
        username=broker_user(config, password),
        password=password,
        tls=config.mqtt.tls,
        placement=Placement(config.site_id, config.location, config.direction),
        keepalive=config.mqtt.keepalive,
    )
